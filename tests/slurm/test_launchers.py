"""Hydra's submitit launchers: two sweep jobs submitted through hydra/launcher=slurm_cpu run at the same
time under the local SLURM (one array job), and through hydra/launcher=local as two local processes;
each finishes with its checkpoints and its own W&B (offline) run."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, run_cli

from .jobs import TRAIN, job_env, step_log, sweep_dir
from .probe import read_steps

STEPS = ["trainer=cpu", "trainer.max_steps=4", "trainer.val_check_interval=4", "logger=wandb"]
STAMP = re.compile(
    r"submitit INFO \(([\d-]+ [\d:,]+)\) - (Starting with JobEnvironment|Job completed successfully)"
)


def job_interval(folder: Path) -> tuple[float, float]:
    """(start, end) of a submitit job, from its logs (stdout and stderr)."""
    text = "".join(log.read_text() for log in sorted(folder.glob("*_log.*")))
    stamps = {kind: value for value, kind in STAMP.findall(text)}
    start, end = (
        datetime.strptime(stamps[k], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for k in ("Starting with JobEnvironment", "Job completed successfully")
    )
    return start, end


def run_sweep(checkout: Path, launcher: str, env: dict) -> tuple[list[Path], float]:
    """The two-job sweep, run from ``checkout``: its job directories and sweep -> first step (s)."""
    started = time.time()
    probe = step_log("${paths.output_dir}/steps")
    args = ["-m", f"hydra/launcher={launcher}", *TRAIN, *STEPS, "seed=0,1", *probe]
    result = run_cli(["ddpm-train", *args], cwd=checkout, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    sweep = sweep_dir(checkout)
    assert sweep is not None
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    run_ids = set()
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").is_file()
        (offline,) = (job / "wandb").glob("offline-run-*")
        run_id = (job / "wandb_run_id").read_text().strip()
        assert offline.name.endswith(run_id)
        run_ids.add(run_id)
    assert len(run_ids) == 2
    # the two jobs ran at the same time: their submitit intervals overlap
    folders = sorted(p for p in (sweep / ".submitit").iterdir() if list(p.glob("*_log.*")))
    (a0, a1), (b0, b1) = (job_interval(folder) for folder in folders)
    assert max(a0, b0) < min(a1, b1), ((a0, a1), (b0, b1))
    return jobs, min(read_steps(job / "steps")[0]["time"] for job in jobs) - started


@pytest.mark.slurm
def test_two_sweep_jobs_run_concurrently_on_slurm(slurm, checkout):
    jobs, first_step = run_sweep(checkout, "slurm_cpu", job_env(slurm))
    assert {read_steps(job / "steps")[0]["environment"] for job in jobs} == {"SLURMEnvironment"}
    print(f"\nsweep submitted -> first training step (array of 2 jobs): {first_step:.1f} s")


@pytest.mark.slurm
def test_the_same_sweep_through_the_local_launcher(checkout):
    jobs, _ = run_sweep(checkout, "local", {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)})
    assert {read_steps(job / "steps")[0]["environment"] for job in jobs} == {"LightningEnvironment"}
