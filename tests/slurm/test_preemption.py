"""Preemption on a real (local) SLURM: a running job gets the pre-timeout signal (``scancel --signal=USR1``,
what ``sbatch --signal=USR1@<s>`` sends before the time limit), writes a checkpoint at the next step,
requeues itself (``scontrol requeue``), starts again in the same run directory (runs/slurm-<job id>), resumes
(resume=auto) in the same W&B run, and ends with the weights, EMA and Adam state of an uninterrupted run,
bit for bit. Prints the measured delays."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO_ROOT, run_cli

from .jobs import (
    SCRIPTS,
    TRAIN,
    assert_same,
    job_env,
    job_info,
    sbatch,
    step_log,
    training_state,
    wait_until,
)
from .probe import read_steps

pytestmark = pytest.mark.slurm

MAX_STEPS = 40
STEPS = [
    "trainer=cpu",
    f"trainer.max_steps={MAX_STEPS}",
    "trainer.val_check_interval=20",
    "callbacks.model_checkpoint.every_n_train_steps=20",
    "logger=wandb",
]


def test_preempted_job_requeues_resumes_and_ends_bit_identical(slurm, tmp_path):
    reference = run_cli(
        ["ddpm-train", *TRAIN, *STEPS, *step_log(tmp_path / "ref_steps"), f"paths.root_dir={tmp_path}/ref"],
        cwd=REPO_ROOT,
        timeout=600,
        env={"OMP_NUM_THREADS": "1"},  # as the SLURM job: bit-exact needs equal thread counts
    )
    assert reference.returncode == 0, reference.stderr[-4000:]

    out, steps = tmp_path / "job.out", tmp_path / "steps"
    submitted = time.time()
    job, _ = sbatch(
        slurm,
        ["--ntasks-per-node=1", "--gpus-per-node=0", "--cpus-per-task=1", f"--output={out}"],
        SCRIPTS / "train.sbatch",
        [*TRAIN, *STEPS, *step_log(steps), f"paths.root_dir={tmp_path}/job"],
    )
    run_dir = tmp_path / "job" / "logs" / "train" / "runs" / f"slurm-{job}"
    preempted = run_dir / "checkpoints" / "preempted.ckpt"
    wait_until(lambda: len(read_steps(steps)) >= 5, 300, "5 training steps")
    signalled = time.time()
    subprocess.run(["scancel", "--signal=USR1", job], env=slurm.env(), check=True)
    wait_until(preempted.exists, 120, "the preemption checkpoint")
    checkpoint_s = preempted.stat().st_mtime - signalled
    # requeued by the job itself: pending until its BeginTime (SLURM holds a requeued job ~2 min): start now
    info = wait_until(lambda: (i := job_info(slurm, job)).get("JobState") == "PENDING" and i, 120, "requeue")
    requeued = time.time()
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=slurm.env(), check=True)
    final = wait_until(
        lambda: (i := job_info(slurm, job)).get("JobState") in ("COMPLETED", "FAILED", "CANCELLED") and i,
        600,
        "the requeued job to finish",
    )
    log = out.read_text()
    assert final["JobState"] == "COMPLETED" and final["Restarts"] == "1", (final, log[-4000:])

    records = read_steps(steps)
    before = [r for r in records if r["restart"] == 0]
    after = [r for r in records if r["restart"] == 1]
    assert before and after, log[-4000:]
    # the first launch stopped at the checkpoint's step; the requeued one went on from the next step
    assert [r["step"] for r in before + after] == list(range(1, MAX_STEPS + 1)), log[-4000:]
    assert f"continuing {preempted}" in log or "preempted.ckpt" in log, log[-4000:]
    ref_losses = [r["loss"] for r in read_steps(tmp_path / "ref_steps")]
    assert [r["loss"] for r in records] == ref_losses
    (ref_run,) = (tmp_path / "ref" / "logs" / "train" / "runs").iterdir()
    assert_same(
        training_state(run_dir / "checkpoints" / "last.ckpt"),
        training_state(ref_run / "checkpoints" / "last.ckpt"),
    )
    # one W&B run: both launches wrote offline runs under the id kept in the run directory
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(p.name.endswith(f"-{run_id}") for p in offline), offline

    said = re.search(r"at step (\d+), ([\d.]+) s after the signal", log)
    print(
        f"\nsbatch -> first training step: {before[0]['time'] - submitted:.1f} s"
        f"\npre-timeout signal -> checkpoint on disk: {checkpoint_s:.2f} s"
        f" (callback: {said.group(2) if said else '?'} s, step {said.group(1) if said else '?'})"
        f"\nrequeue cycle (last step before -> first step after, BeginTime skipped with StartTime=now):"
        f" {after[0]['time'] - before[-1]['time']:.1f} s; pending seen {requeued - signalled:.1f} s after"
        f" the signal (reason {info.get('Reason')})"
    )


def test_sweep_job_preempted_through_the_hydra_slurm_launcher(slurm, tmp_path):
    """The same through hydra/launcher=slurm_cpu (submitit: an array job, SIGUSR2): the preempted task
    requeues and resumes, its neighbour is untouched, and the sweep returns only after the requeued task
    has finished (submitit waits for its result, which the first launch must not write)."""
    sweep = tmp_path / "sweep"
    probe = step_log("${paths.output_dir}/steps")
    args = ["-m", "hydra/launcher=slurm_cpu", *TRAIN, *STEPS[:-1], "logger=csv", "seed=0,1", *probe]
    paths = [f"hydra.sweep.dir={sweep}", f"paths.root_dir={tmp_path}"]
    master = subprocess.Popen(
        [sys.executable, "-m", "ddpm.cli.ddpm_train", *args, *paths],
        cwd=REPO_ROOT,
        env=job_env(slurm),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(read_steps(sweep / "0" / "steps")) >= 5, 300, "5 steps of job 0")
        tasks = subprocess.run(["squeue", "-h", "-o", "%i"], env=slurm.env(), capture_output=True, text=True)
        (task,) = [t for t in tasks.stdout.split() if t.endswith("_0")]
        subprocess.run(["scancel", "--signal=USR2", task], env=slurm.env(), check=True)
        wait_until(lambda: job_info(slurm, task).get("JobState") == "PENDING", 120, "requeue of task 0")
        subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], env=slurm.env(), check=True)
        _, err = master.communicate(timeout=600)
    finally:
        master.kill()
    finished = time.time()
    assert master.returncode == 0, err[-4000:]
    preempted, neighbour = read_steps(sweep / "0" / "steps"), read_steps(sweep / "1" / "steps")
    assert [r["step"] for r in preempted] == list(range(1, MAX_STEPS + 1))
    assert {r["restart"] for r in preempted} == {0, 1} and {r["restart"] for r in neighbour} == {0}
    assert (sweep / "0" / "checkpoints" / "preempted.ckpt").is_file()
    assert preempted[-1]["time"] < finished
