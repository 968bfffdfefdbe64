"""The "done when" of the sweep summary: a 2-job multirun of the quickstart, as a user types it."""

from __future__ import annotations

import csv

import pytest

from tests.helpers import run_cli


@pytest.mark.slow  # two quickstart jobs (~40 s); the table builder's unit tests are in test_summary.py
def test_a_two_job_multirun_writes_and_prints_its_summary(tmp_path):
    result = run_cli(
        [
            "ddpm-train",
            "-m",
            "experiment=quickstart",
            "module.optimizer.lr=1e-3,2e-3",
            "trainer.max_steps=5",
            "trainer.val_check_interval=5",
            "sampler.steps=5",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "logs" / "quickstart" / "multiruns" / "latest"  # the sweep that just ended
    assert sweep.is_symlink() and sweep.resolve().parent == sweep.parent
    with (sweep / "summary.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["job"] for r in rows) == ["0", "1"]
    assert [r["status"] for r in rows] == ["done", "done"]
    assert all(float(r["val/loss_ema"]) > 0 for r in rows)  # the optimized metric, best first
    assert float(rows[0]["val/loss_ema"]) <= float(rows[1]["val/loss_ema"])
    assert {r["overrides"].split()[1] for r in rows} == {
        "module.optimizer.lr=0.001",  # as Hydra writes the overrides
        "module.optimizer.lr=0.002",
    }
    assert all(float(r["eval/digits_score_180"]) >= 1 for r in rows)  # the quickstart's in-loop score
    assert (sweep / "summary.png").stat().st_size > 0
    text = (sweep / "summary.md").read_text()
    assert text in result.stdout  # printed at the end of the sweep
    assert "| module.optimizer.lr=0.001 |" in text and "| module.optimizer.lr=0.002 |" in text


@pytest.mark.slow  # a second real multirun (about 10 s of CPU)
def test_a_sweep_that_stops_on_failed_jobs_still_writes_its_summary(tmp_path):
    # Hydra's basic sweeper raises after a batch with a failed job, so Hydra's on_multirun_end never runs:
    # the summary is written when the process exits, each job failed with its one line
    result = run_cli(
        ["ddpm-train", "-m", "experiment=quickstart", "init_from=a,b", "ckpt_path=c"], cwd=tmp_path
    )
    assert result.returncode == 2
    sweep = tmp_path / "logs" / "quickstart" / "multiruns" / "latest"  # the sweep that just ended
    assert sweep.is_symlink() and sweep.resolve().parent == sweep.parent
    with (sweep / "summary.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["status"]) for r in rows] == [("0", "failed"), ("1", "failed")]
    assert all(r["error"].startswith("init_from and ckpt_path exclude each other") for r in rows)
    assert "| 0 | failed |" in result.stdout
