"""DDP started by SLURM: a 2-task CPU job (``srun`` inside an ``sbatch`` allocation, through
scripts/slurm/train.sbatch) trains exactly like Lightning's own 2-process DDP (``trainer=ddp_cpu``)."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli

from .jobs import MAX_STEPS, STEPS, TRAIN, assert_same_end, run_dirs, step_log
from .probe import read_steps

pytestmark = pytest.mark.slurm


def test_srun_two_tasks_equal_lightning_ddp(one_node_ddp, checkout):
    local = run_cli(
        ["ddpm-train", *TRAIN, *STEPS, "logger=csv", "trainer=ddp_cpu", *step_log(checkout / "own")],
        cwd=checkout,
        timeout=600,
        env={"OMP_NUM_THREADS": "1"},  # as the SLURM job: bit-exact needs equal thread counts
    )
    assert local.returncode == 0, local.stderr[-4000:]

    for rank in (0, 1):
        srun, own = read_steps(one_node_ddp.steps, rank), read_steps(checkout / "own", rank)
        assert [r["environment"] for r in srun] == ["SLURMEnvironment"] * MAX_STEPS
        assert [r["environment"] for r in own] == ["LightningEnvironment"] * MAX_STEPS
        assert {r["world_size"] for r in srun} == {r["world_size"] for r in own} == {2}
        assert [r["loss"] for r in srun] == [r["loss"] for r in own]
    # one run directory for the job (runs/slurm-<job id>), and the same weights, EMA and Adam state
    assert list(run_dirs(one_node_ddp.checkout)) == [f"slurm-{one_node_ddp.job}"]
    (own_run,) = run_dirs(checkout).values()
    assert_same_end(one_node_ddp.run_dir, own_run)
    print(f"\n2-task DDP job on one node: {one_node_ddp.timings()}")
