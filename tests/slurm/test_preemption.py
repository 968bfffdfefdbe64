"""Preemption on a real (local) SLURM: a running job gets the pre-timeout signal (``scancel --signal=USR1``,
what ``sbatch --signal=USR1@<s>`` sends before the time limit), writes a checkpoint at the next step,
requeues itself (``scontrol requeue``), starts again in the same run directory (runs/slurm-<job id>), resumes
(resume=auto) in the same W&B run, and ends with the weights, EMA and Adam state of an uninterrupted run,
bit for bit. Prints the measured delays. (On two nodes: test_two_nodes.py.)"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.helpers import run_cli

from .jobs import (
    MAX_STEPS,
    STEPS,
    TRAIN,
    assert_resumed,
    assert_same_end,
    job_env,
    job_info,
    job_output,
    preempt_and_requeue,
    preemption_report,
    run_dirs,
    sbatch,
    step_log,
    sweep_dir,
    wait_until,
)
from .probe import read_steps

pytestmark = pytest.mark.slurm

RUN = [*TRAIN, *STEPS, "trainer=cpu"]


def test_preempted_job_requeues_resumes_and_ends_bit_identical(slurm, checkout):
    reference = run_cli(
        ["ddpm-train", *RUN, "logger=wandb", *step_log(checkout / "ref_steps")],
        cwd=checkout,
        timeout=600,
        env={"OMP_NUM_THREADS": "1"},  # as the SLURM job: bit-exact needs equal thread counts
    )
    assert reference.returncode == 0, reference.stderr[-4000:]
    (ref_run,) = run_dirs(checkout).values()

    steps, submitted = checkout / "steps", time.time()
    options = ["--ntasks-per-node=1", "--gpus-per-node=0", "--cpus-per-task=1"]
    job, _ = sbatch(slurm, checkout, options, [*RUN, "logger=wandb", *step_log(steps)])
    run_dir = checkout / "logs" / "train" / "runs" / f"slurm-{job}"
    cycle = preempt_and_requeue(slurm, job, steps, run_dir)
    log = job_output(checkout, job)
    assert cycle.final["JobState"] == "COMPLETED" and cycle.final["Restarts"] == "1", (
        cycle.final,
        log[-4000:],
    )

    records = read_steps(steps)
    before, after = assert_resumed(records, log)
    assert [r["loss"] for r in records] == [r["loss"] for r in read_steps(checkout / "ref_steps")]
    assert_same_end(run_dir, ref_run)
    # one W&B run: both launches wrote offline runs under the id kept in the run directory
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(p.name.endswith(f"-{run_id}") for p in offline), offline
    print(preemption_report(cycle, before, after, submitted, log))


def test_sweep_job_preempted_through_the_hydra_slurm_launcher(slurm, checkout):
    """The same through hydra/launcher=slurm_cpu (submitit: an array job, SIGUSR2): the preempted task
    requeues and resumes, its neighbour is untouched, and the sweep returns only after the requeued task
    has finished (submitit waits for its result, which the first launch must not write)."""
    probe = step_log("${paths.output_dir}/steps")
    args = ["-m", "hydra/launcher=slurm_cpu", *RUN, "logger=csv", "seed=0,1", *probe]
    master = subprocess.Popen(
        [sys.executable, "-m", "ddpm.cli.ddpm_train", *args],
        cwd=checkout,
        env=job_env(slurm),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sweep = wait_until(lambda: sweep_dir(checkout), 120, "the sweep directory")
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
