"""Helpers of the SLURM tests: a clean copy of the repository to run in, the tiny training run, sbatch /
scontrol wrappers, the DDP jobs and the preemption cycle the tests share, checkpoint comparison."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from tests.helpers import REPO_ROOT

from .probe import read_steps

TRAIN_SBATCH = "scripts/slurm/train.sbatch"  # relative: every job is submitted from a checkout's root
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")

# tests.helpers.TINY without its trainer, callbacks and logger choices (each test picks its own)
TRAIN = [
    "data=digits",
    "data.batch_size=8",
    "model=unet_tiny",
    "model.ch=32",
    "model.ch_mult=[1,2]",
    "model.attn_resolutions=[8]",
    "diffusion.num_timesteps=100",
    "trainer.limit_val_batches=1",
    "trainer.enable_model_summary=false",
    "callbacks=default",
    "~callbacks.sample_grid",
    "~callbacks.loss_curve",
]
# long enough to preempt (ranks of a DDP job agree on a signal every 10 steps), checkpoints every 20 steps
MAX_STEPS = 40
STEPS = [
    f"trainer.max_steps={MAX_STEPS}",
    "trainer.val_check_interval=20",
    "callbacks.model_checkpoint.every_n_train_steps=20",
]
# the same 2-process DDP run, on one node (2 tasks) or on two (1 task each)
ONE_NODE = ["--ntasks-per-node=2", "--gpus-per-node=0", "--cpus-per-task=1"]
TWO_NODES = ["--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=0", "--cpus-per-task=1"]
DDP = [*TRAIN, *STEPS, "logger=csv", "trainer=slurm_cpu"]
DDP_TWO_NODES = [*DDP, "trainer.devices=1", "trainer.num_nodes=2"]


def make_checkout(dest: Path) -> Path:
    """A clean clone of the working tree at ``dest``: its tracked and untracked, not ignored files (no
    logs, no virtual environment) in a fresh git repository."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file() or source.is_symlink():  # a tracked file deleted in the working tree is left out
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name, follow_symlinks=False)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def run_dirs(checkout: Path, task: str = "train") -> dict[str, Path]:
    """The run directories of ``task`` in a checkout by name (``runs/latest``, a link, left out)."""
    runs = checkout / "logs" / task / "runs"
    return {p.name: p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()} if runs.is_dir() else {}


def sweep_dir(checkout: Path, task: str = "train") -> Path | None:
    """The one multirun directory of ``task`` in ``checkout`` (None before the sweep made it); ``latest``
    is the link to it."""
    multiruns = checkout / "logs" / task / "multiruns"
    found = [p for p in multiruns.iterdir() if p.name != "latest"] if multiruns.is_dir() else []
    return found[0] if len(found) == 1 else None


def step_log(output_dir: Path | str) -> list[str]:
    """Overrides adding tests.slurm.probe.StepLog, writing into ``output_dir``."""
    target = "+callbacks.steps._target_=tests.slurm.probe.StepLog"
    return [target, f"+callbacks.steps.output_dir={output_dir}"]


def user_env(cluster) -> dict[str, str]:
    """A user's shell with this virtual environment activated (``ddpm-train`` on PATH) on the cluster."""
    env = cluster.env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def job_env(cluster, **extra: str) -> dict[str, str]:
    """The submitting environment of the instrumented jobs: tests importable (the probe), W&B offline,
    one thread per process."""
    env = user_env(cluster)
    pythonpath = [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
    env.update(
        PYTHONPATH=os.pathsep.join(pythonpath),
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def sbatch(
    cluster,
    cwd: Path,
    options: list[str],
    args: list[str],
    script: str = TRAIN_SBATCH,
    *,
    wait: bool = False,
    env: dict[str, str] | None = None,
) -> tuple[str, int]:
    """``sbatch options script args`` from ``cwd`` (``env``: extra variables): (job id, 0). ``wait``: wait
    for the job to end, polling scontrol (``sbatch --wait`` polls every 2 s, doubled up to 32 s), and
    return its exit code instead (1 for a job that did not complete)."""
    cmd = ["sbatch", "--parsable", *options, script, *args]
    full_env = job_env(cluster, **(env or {}))
    done = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"sbatch failed: {done.stderr}")
    job = done.stdout.strip().split(";")[0]
    if not wait:
        return job, 0
    info = wait_ended(cluster, job)
    return job, int(info["ExitCode"].split(":")[0]) or int(info["JobState"] != "COMPLETED")


def job_output(cwd: Path, job: str, name: str = "ddpm-train") -> str:
    """The job's output file (the sbatch scripts' ``--output=slurm-%x-%j.out`` in the submit directory)."""
    path = cwd / f"slurm-{name}-{job}.out"
    return path.read_text(errors="replace") if path.exists() else ""


def job_info(cluster, job_id: str) -> dict[str, str]:
    """``scontrol show job`` as a dict (JobState, Reason, Restarts, ...); {} once SLURM forgot the job."""
    out = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id], env=cluster.env(), capture_output=True, text=True
    ).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate()`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_state(cluster, job: str, states: tuple[str, ...], timeout: float, what: str) -> dict[str, str]:
    """Poll ``scontrol`` until ``job`` is in one of ``states``; its ``show job`` then."""
    return wait_until(
        lambda: (i := job_info(cluster, job)).get("JobState") in states and i, timeout, what, 0.5
    )


def wait_ended(cluster, job: str, timeout: float = 600) -> dict[str, str]:
    """Poll ``scontrol`` until ``job`` has ended (what ``sbatch --wait`` does); its last ``show job``."""
    return wait_state(cluster, job, ENDED, timeout, f"job {job} to end")


def submitted_job(stdout: str) -> str:
    """The job id in sbatch's ``Submitted batch job <id>``."""
    found = re.search(r"Submitted batch job (\d+)", stdout)
    assert found, stdout
    return found.group(1)


@dataclass
class DdpJob:
    """A finished training job submitted from ``checkout``: its id, probe records, submission and end."""

    job: str
    checkout: Path
    steps: Path
    submitted: float
    ended: float

    @property
    def run_dir(self) -> Path:
        return self.checkout / "logs" / "train" / "runs" / f"slurm-{self.job}"

    def timings(self) -> str:
        """sbatch -> first training step (rank 0), the steps themselves, sbatch -> job ended; seconds."""
        records = read_steps(self.steps)
        first, last = records[0]["time"] - self.submitted, records[-1]["time"] - records[0]["time"]
        return (
            f"sbatch -> first step {first:.1f} s, steps 1-{len(records)} {last:.1f} s,"
            f" sbatch -> job ended {self.ended - self.submitted:.1f} s"
        )


def run_ddp_job(cluster, checkout: Path, options: list[str], args: list[str]) -> DdpJob:
    """Submit a training job from ``checkout`` (probe records in ``<checkout>/probe``) and wait for it;
    asserts that it succeeded."""
    steps, submitted = checkout / "probe", time.time()
    job, rc = sbatch(cluster, checkout, options, [*args, *step_log(steps)], wait=True)
    assert rc == 0, job_output(checkout, job)[-4000:]
    return DdpJob(job, checkout, steps, submitted, time.time())


@dataclass
class Preemption:
    """What a preemption cycle measured (``time.time()`` stamps) and the job's final ``show job``."""

    signalled: float
    checkpoint_s: float
    requeued: float
    pending: dict[str, str]
    final: dict[str, str]


def preempt_and_requeue(cluster, job: str, steps: Path, run_dir: Path, after_steps: int = 5) -> Preemption:
    """Once ``job`` made ``after_steps`` steps, send it the pre-timeout signal (``scancel --signal=USR1``),
    wait for its checkpoint and its requeue, start it again without waiting for its BeginTime (SLURM holds
    a requeued job ~2 min; ``scontrol update StartTime=now``, as an admin may) and wait for it to end."""
    preempted = run_dir / "checkpoints" / "preempted.ckpt"
    wait_until(lambda: len(read_steps(steps)) >= after_steps, 300, f"{after_steps} training steps")
    signalled = time.time()
    subprocess.run(["scancel", "--signal=USR1", job], env=cluster.env(), check=True)
    wait_until(preempted.exists, 120, "the preemption checkpoint")
    checkpoint_s = preempted.stat().st_mtime - signalled
    pending = wait_until(
        lambda: (i := job_info(cluster, job)).get("JobState") == "PENDING" and i, 120, "requeue"
    )
    requeued = time.time()
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=cluster.env(), check=True)
    return Preemption(signalled, checkpoint_s, requeued, pending, wait_ended(cluster, job))


def assert_resumed(records: list[dict], log: str) -> tuple[list[dict], list[dict]]:
    """One launch stopped at the preemption checkpoint's step, the requeued one went on from the next step
    to the end; the records (before, after)."""
    before = [r for r in records if r["restart"] == 0]
    after = [r for r in records if r["restart"] == 1]
    assert before and after, log[-4000:]
    assert [r["step"] for r in before + after] == list(range(1, MAX_STEPS + 1)), log[-4000:]
    assert "preempted.ckpt" in log, log[-4000:]
    return before, after


def preemption_report(
    cycle: Preemption, before: list[dict], after: list[dict], submitted: float, log: str
) -> str:
    """The measured delays of a preemption cycle, as printed lines."""
    said = re.search(r"at step (\d+), ([\d.]+) s after the signal", log)
    cycle_s, pending_s = after[0]["time"] - before[-1]["time"], cycle.requeued - cycle.signalled
    begin = cycle.pending.get("EligibleTime", "")
    hold_s = datetime.fromisoformat(begin).timestamp() - cycle.requeued if begin[:1].isdigit() else None
    return (
        f"\nsbatch -> first training step: {before[0]['time'] - submitted:.1f} s"
        f"\npre-timeout signal -> checkpoint on disk: {cycle.checkpoint_s:.2f} s"
        f" (callback: {said.group(2) if said else '?'} s, step {said.group(1) if said else '?'})"
        f"\nrequeue cycle (last step before -> first step after, BeginTime skipped with StartTime=now):"
        f" {cycle_s:.1f} s; pending seen {pending_s:.1f} s after the signal"
        f" (reason {cycle.pending.get('Reason')}; SLURM would have held it"
        f" {f'{hold_s:.0f} s' if hold_s is not None else '?'} more, to its EligibleTime {begin})"
    )


def assert_same(a, b, where: str = "") -> None:
    """Recursively equal: tensors bit for bit (dtype, shape, values), containers and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, set(a) ^ set(b))
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def training_state(checkpoint: Path) -> dict:
    """What an exact continuation must reproduce: the weights (raw and EMA) and the optimizer state."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return {"state_dict": ckpt["state_dict"], "optimizer_states": ckpt["optimizer_states"]}


def assert_same_end(a: Path, b: Path) -> None:
    """Two run directories ended with the same weights, EMA and Adam state, bit for bit."""
    assert_same(
        training_state(a / "checkpoints" / "last.ckpt"), training_state(b / "checkpoints" / "last.ckpt")
    )
