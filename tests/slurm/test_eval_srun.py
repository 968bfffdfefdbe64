"""ddpm-eval under SLURM: 2 tasks started by srun (scripts/slurm/eval.sbatch) join one process group from
SLURM's rank variables and give the report of a single process (same samples, FID / IS / NLL)."""

from __future__ import annotations

import json

import pytest

from ddpm.metrics.inception import make_random_inception_weights
from tests.evaluation.helpers import write_lightning_checkpoint
from tests.evaluation.test_eval_app import eval_overrides
from tests.helpers import run_cli

from .jobs import job_output, sbatch

pytestmark = pytest.mark.slurm


def test_eval_on_two_srun_tasks_equals_one_process(slurm, checkout, tmp_path):
    write_lightning_checkpoint(tmp_path / "last.ckpt", tmp_path)
    inception = make_random_inception_weights(tmp_path / "inception.pth", seed=0)
    extra = {"generation.num_samples": 5, "metrics.nll.enabled": "false"}  # NLL sharding: test_distributed
    overrides = eval_overrides(tmp_path / "last.ckpt", inception, tmp_path / "cache", **extra)
    one = run_cli(["ddpm-eval", *overrides, f"hydra.run.dir={tmp_path / 'one'}"], cwd=checkout, timeout=600)
    assert one.returncode == 0, one.stderr[-4000:]
    job, rc = sbatch(
        slurm,
        checkout,
        ["--ntasks-per-node=2", "--gpus-per-node=0", "--cpus-per-task=1"],
        overrides,
        script="scripts/slurm/eval.sbatch",
        wait=True,
        env={"RUN_DIR": str(tmp_path / "two")},
    )
    assert rc == 0, job_output(checkout, job, "ddpm-eval")[-4000:]
    info = json.loads((tmp_path / "two" / "run_info.json").read_text())
    assert info["world_size"] == 2
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("one", "two"))
    assert a["metrics"].keys() == b["metrics"].keys() and a["metrics"]
    for name, value in a["metrics"].items():
        assert b["metrics"][name] == pytest.approx(value, rel=1e-5), name
    assert (tmp_path / "one" / "samples.png").read_bytes() == (tmp_path / "two" / "samples.png").read_bytes()
