"""Helpers of the SLURM tests: the tiny training run, sbatch / scontrol wrappers, checkpoint comparison."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import torch

from tests.helpers import REPO_ROOT

SCRIPTS = REPO_ROOT / "scripts" / "slurm"

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


def step_log(output_dir: Path) -> list[str]:
    """Overrides adding tests.slurm.probe.StepLog, writing into ``output_dir``."""
    target = "+callbacks.steps._target_=tests.slurm.probe.StepLog"
    return [target, f"+callbacks.steps.output_dir={output_dir}"]


def job_env(cluster, **extra: str) -> dict[str, str]:
    """The submitting environment: the cluster's SLURM_CONF, tests importable, W&B offline, one thread."""
    env = cluster.env()
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


def sbatch(cluster, options: list[str], script: Path, args: list[str], wait: bool = False, env=None):
    """Submit ``script args`` with sbatch ``options`` from the repository root: (job id, sbatch's exit code).

    ``wait``: block until the job ends (the exit code is then the job's); ``env``: extra variables."""
    cmd = ["sbatch", "--parsable", *(["--wait"] if wait else []), *options, str(script), *args]
    done = subprocess.run(
        cmd, cwd=REPO_ROOT, env=job_env(cluster, **(env or {})), capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0 and not wait:
        raise RuntimeError(f"sbatch failed: {done.stderr}")
    return done.stdout.strip().split(";")[0], done.returncode


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
