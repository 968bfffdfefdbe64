"""DDP started by SLURM: a 2-task CPU job (``srun`` inside an ``sbatch`` allocation, through
scripts/slurm/train.sbatch) trains exactly like Lightning's own 2-process DDP (``trainer=ddp_cpu``)."""

from __future__ import annotations

import time

import pytest

from tests.helpers import REPO_ROOT, run_cli

from .jobs import SCRIPTS, TRAIN, assert_same, sbatch, step_log, training_state
from .probe import read_steps

pytestmark = pytest.mark.slurm

STEPS = ["trainer.max_steps=4", "trainer.val_check_interval=4", "logger=csv"]


def test_srun_two_tasks_equal_lightning_ddp(slurm, tmp_path):
    started = time.time()
    job, rc = sbatch(
        slurm,
        ["--ntasks-per-node=2", "--gpus-per-node=0", "--cpus-per-task=1", f"--output={tmp_path / 'job.out'}"],
        SCRIPTS / "train.sbatch",
        [*TRAIN, *STEPS, "trainer=slurm_cpu", *step_log(tmp_path / "srun"), f"paths.root_dir={tmp_path}/a"],
        wait=True,
    )
    assert rc == 0, (tmp_path / "job.out").read_text()[-4000:]
    own_ddp = ["trainer=ddp_cpu", *step_log(tmp_path / "own"), f"paths.root_dir={tmp_path}/b"]
    local = run_cli(
        ["ddpm-train", *TRAIN, *STEPS, *own_ddp],
        cwd=REPO_ROOT,
        timeout=600,
        env={"OMP_NUM_THREADS": "1"},  # as the SLURM job: bit-exact needs equal thread counts
    )
    assert local.returncode == 0, local.stderr[-4000:]

    for rank in (0, 1):
        srun, own = read_steps(tmp_path / "srun", rank), read_steps(tmp_path / "own", rank)
        assert [r["environment"] for r in srun] == ["SLURMEnvironment"] * 4
        assert [r["environment"] for r in own] == ["LightningEnvironment"] * 4
        assert {r["world_size"] for r in srun} == {r["world_size"] for r in own} == {2}
        assert [r["loss"] for r in srun] == [r["loss"] for r in own]
    # one run directory for the job (runs/slurm-<job id>), and the same weights, EMA and Adam state
    (a,) = (tmp_path / "a" / "logs" / "train" / "runs").iterdir()
    assert a.name == f"slurm-{job}"
    (b,) = (tmp_path / "b" / "logs" / "train" / "runs").iterdir()
    last_a, last_b = (run / "checkpoints" / "last.ckpt" for run in (a, b))
    assert_same(training_state(last_a), training_state(last_b))
    first_step = read_steps(tmp_path / "srun", 0)[0]["time"]
    print(f"\nsbatch -> first training step (2-task DDP job): {first_step - started:.1f} s")
