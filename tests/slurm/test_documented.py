"""The documented CPU cluster commands (documented.py), run exactly as written from the root of the
session's clean clone, with only ``SHORTEN`` appended: every SLURM job ends with exit code 0 and leaves its
run directory with ``checkpoints/last.ckpt`` in the clone; the 2-node job ran on both nodes."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from .documented import DOCUMENTED, SHORTEN
from .jobs import job_info, job_output, submitted_job, sweep_dir, user_env, wait_ended

pytestmark = pytest.mark.slurm


def run_documented(cluster, clone: Path, command: str) -> subprocess.CompletedProcess:
    """``command`` + SHORTEN from the clone's root, in a shell with this virtual environment activated."""
    done = subprocess.run(
        [*shlex.split(command), *SHORTEN], cwd=clone, env=user_env(cluster), capture_output=True, text=True
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def assert_succeeded(info: dict[str, str], log: str = "") -> None:
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", (info, log[-4000:])


@pytest.mark.parametrize("command", DOCUMENTED[:2], ids=["one-node", "two-nodes"])
def test_documented_sbatch_command(slurm, clone, command):
    started = time.time()
    job = submitted_job(run_documented(slurm, clone, command).stdout)
    info = wait_ended(slurm, job)  # polls as sbatch --wait would
    ended, log = time.time(), job_output(clone, job)
    assert_succeeded(info, log)
    run_dir = clone / "logs" / "quickstart" / "runs" / f"slurm-{job}"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file(), log[-4000:]
    nodes = {"n1", "n2"} if "--nodes=2" in command else {info["NodeList"]}
    assert slurm.launched_on(job) == nodes, (info["NodeList"], log[-4000:])
    assert "MEMBER: 2/2" in log, log[-4000:]  # the second of the 2 DDP processes joined
    print(f"\n{command}\nsbatch -> job ended: {ended - started:.1f} s")


def test_documented_sweep_command(slurm, clone):
    started = time.time()
    run_documented(slurm, clone, DOCUMENTED[2])
    ended, sweep = time.time(), sweep_dir(clone, "quickstart")
    assert sweep is not None
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1"]
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
    tasks = sorted(p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name))
    assert [t.split("_")[1] for t in tasks] == ["0", "1"], tasks  # one array job, two tasks
    for task in tasks:
        assert_succeeded(job_info(slurm, task))
    print(f"\n{DOCUMENTED[2]}\ncommand -> returned (both jobs done): {ended - started:.1f} s")
