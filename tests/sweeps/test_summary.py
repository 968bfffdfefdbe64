"""The sweep summary's table, files and joins, on hand-made run directories (no training)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from ddpm.errors import ConfigError
from ddpm.evaluation.paper_numbers import TABLE2
from ddpm.sweeps.callback import SweepSummaryCallback
from ddpm.sweeps.evaluations import EVALUATIONS_FILE, register_evaluations
from ddpm.sweeps.jobs import DIVERGED, DONE, FAILED, outcome, sweep_jobs
from ddpm.sweeps.summary import write_summary


def make_job(sweep: Path, number: int, overrides: list[str], status: str | None, rows: list[dict], **extra):
    """A run directory as a training job leaves it: .hydra/, job_result.json (unless killed), metrics.csv."""
    run = sweep / str(number)
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), run / ".hydra" / "overrides.yaml")
    config = {
        "task_name": "t",
        "optimized_metric": extra.get("metric", "val/loss_ema"),
        **extra.get("cfg", {}),
    }
    OmegaConf.save(OmegaConf.create(config), run / ".hydra" / "config.yaml")
    choices = {"experiment": extra["experiment"]} if "experiment" in extra else {}
    OmegaConf.save(
        OmegaConf.create({"hydra": {"runtime": {"choices": choices}}}), run / ".hydra" / "hydra.yaml"
    )
    if status is not None:
        (run / "job_result.json").write_text(json.dumps({"status": status, "error": extra.get("error")}))
    names = sorted({k for row in rows for k in row} - {"step"})
    (run / "csv").mkdir()
    with (run / "csv" / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "step", *names])
        writer.writeheader()
        writer.writerows(rows)
    return run


def read_rows(sweep: Path) -> list[dict]:
    with (sweep / "summary.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def sweep(tmp_path):
    sweep = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    base = ["experiment=quickstart", "trainer.max_steps=20"]
    curve = [{"step": 9, "val/loss_ema": 0.4, "train/loss": 0.9}, {"step": 19, "val/loss_ema": 0.5}]
    make_job(sweep, 0, [*base, "module.optimizer.lr=0.001"], DONE, curve)
    nan = [{"step": 9, "val/loss_ema": 0.7}, {"step": 19, "val/loss_ema": math.nan}]
    make_job(sweep, 1, [*base, "module.optimizer.lr=1"], DIVERGED, nan)
    make_job(sweep, 2, [*base, "module.optimizer.lr=0.01"], FAILED, [], error="out of memory")
    make_job(sweep, 3, [*base, "module.optimizer.lr=0.002"], None, [{"step": 9, "val/loss_ema": 0.1}])
    make_job(sweep, 4, [*base, "module.optimizer.lr=0.003"], DONE, [{"step": 19, "val/loss_ema": 0.3}])
    return sweep


def test_the_table_is_best_first_with_each_jobs_status_final_and_best_metric(sweep):
    text, _ = write_summary(sweep)
    rows = read_rows(sweep)
    # job 3 has the lowest number but no job_result.json (killed): failed, like job 2; without a
    # number (diverged: NaN, failed: none) a job comes after every job with one
    assert [r["job"] for r in rows] == ["4", "0", "1", "2", "3"]
    assert [r["status"] for r in rows] == ["done", "done", "diverged", "failed", "failed"]
    job0 = rows[1]
    assert (job0["val/loss_ema"], job0["best val/loss_ema"]) == ("0.5", "0.4")
    assert rows[2]["val/loss_ema"] == "nan" and rows[2]["best val/loss_ema"] == "0.7"
    assert rows[3]["error"] == "out of memory" and rows[3]["val/loss_ema"] == ""
    assert "job_result.json" in rows[4]["error"]
    assert job0["overrides"] == "experiment=quickstart trainer.max_steps=20 module.optimizer.lr=0.001"
    assert Path(job0["run_dir"]) == sweep / "0"
    # the Markdown shows the overrides that differ, the shared ones once above the table
    assert "Every job: experiment=quickstart trainer.max_steps=20" in text
    assert "| 4 | done | 0.3 | 0.3 |" in text and "| module.optimizer.lr=0.003 |" in text
    assert (sweep / "summary.md").read_text() == text
    assert (sweep / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_maximized_metric_sorts_highest_first(tmp_path):
    metric = "eval/digits_score_180"
    make_job(tmp_path, 0, ["seed=0"], DONE, [{"step": 5, metric: 3.0}], metric=metric)
    make_job(
        tmp_path, 1, ["seed=1"], DONE, [{"step": 5, metric: 7.0}, {"step": 9, metric: 6.0}], metric=metric
    )
    write_summary(tmp_path)
    rows = read_rows(tmp_path)
    assert [r["job"] for r in rows] == ["1", "0"]
    assert (rows[0][metric], rows[0][f"best {metric}"]) == ("6", "7")


def test_outcome_and_the_job_end_callback_write_the_status(tmp_path):
    assert outcome(0.5, failed=False) == DONE
    assert outcome(math.nan, failed=False) == DIVERGED
    assert outcome(None, failed=False) == DONE
    assert outcome(None, failed=True) == FAILED
    config = OmegaConf.create({"hydra": {"mode": RunMode.MULTIRUN, "runtime": {"output_dir": str(tmp_path)}}})
    failed = JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError(ConfigError("bad key: fix it")))
    SweepSummaryCallback().on_job_end(config, failed)
    assert json.loads((tmp_path / "job_result.json").read_text()) == {
        "status": "failed",
        "error": "RuntimeError: bad key: fix it",
        "return_value": None,
    }
    SweepSummaryCallback().on_job_end(config, JobReturn(status=JobStatus.COMPLETED, _return_value=math.nan))
    assert json.loads((tmp_path / "job_result.json").read_text())["status"] == "diverged"


def test_a_table2_sweep_gets_the_papers_layout_beside_the_measured_numbers(tmp_path):
    cells = list(TABLE2)
    fid = "eval/fid_10k_ddim100_train"
    for number, cell in enumerate(cells[:3]):
        rows = [{"step": 5, fid: 20.0 + number, "eval/is_10k_ddim100_10splits": 7.0}]
        make_job(tmp_path, number, [f"experiment={cell}"], DONE, rows, experiment=cell)
    text, _ = write_summary(tmp_path)
    table2 = text[text.index("## Table 2") :]
    lines = [line for line in table2.splitlines() if line.startswith("| table2_")]
    assert [line.split(" | ")[0][2:] for line in lines] == cells[:3]  # the paper's order
    first = TABLE2[cells[0]]
    assert f"| {first['fid']:.2f} |" in lines[0] and f"{first['is']:.2f} ± {first['is_std']:.2f}" in lines[0]
    assert f"{fid} = 20 |" in lines[0] and "eval/is_10k_ddim100_10splits = 7 |" in lines[0]
    no_numbers = [cell for cell in cells[:3] if not TABLE2[cell]]
    for cell in no_numbers:
        assert "| - | - |" in next(line for line in lines if line.startswith(f"| {cell} "))


def test_a_ddpm_eval_sweep_joins_the_training_sweeps_table(tmp_path):
    train = tmp_path / "train" / "multiruns" / "a"
    for number in (0, 1):
        make_job(train, number, [f"seed={number}"], DONE, [{"step": 5, "val/loss_ema": 0.5 - number / 10}])
        (train / str(number) / "checkpoints").mkdir()
    (train / "multirun.yaml").write_text("{}")
    evals = tmp_path / "eval" / "multiruns" / "b"
    for number in (0, 1):
        checkpoint = train / str(number) / "checkpoints" / "last.ckpt"
        run = make_job(evals, number, [f"ckpt_path={checkpoint}"], DONE, [], metric=None)
        report = {"metrics": {"digits_score_16": 4.0 + number}, "protocol": {"checkpoint": str(checkpoint)}}
        (run / "report.json").write_text(json.dumps(report))
    assert register_evaluations(sweep_jobs(evals)) == [train]
    assert register_evaluations(sweep_jobs(evals)) == [train]  # listed once
    recorded = json.loads((train / EVALUATIONS_FILE).read_text())
    assert recorded == {
        str(evals / str(n)): str(train / str(n) / "checkpoints" / "last.ckpt") for n in (0, 1)
    }
    write_summary(train)
    assert [(r["job"], r["digits_score_16"]) for r in read_rows(train)] == [("1", "5"), ("0", "4")]
    write_summary(evals)  # the evaluation sweep's own table: its reports' numbers, best first
    assert [(r["job"], r["digits_score_16"]) for r in read_rows(evals)] == [("1", "5"), ("0", "4")]


def test_the_multirun_end_writes_the_summary_and_links_the_newest_sweep(tmp_path, capsys):
    sweeps = tmp_path / "multiruns"
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweeps / "a")}}})
    callback = SweepSummaryCallback(wandb=False)
    callback.on_multirun_start(config)
    callback.on_multirun_end(config)  # stopped before its first job: nothing to summarize, no link
    assert not (sweeps / "latest").exists() and "Summary:" not in capsys.readouterr().out
    make_job(sweeps / "a", 0, ["seed=0"], DONE, [{"step": 5, "val/loss_ema": 0.5}])
    callback.on_multirun_start(config)
    callback.on_multirun_end(config)
    assert (sweeps / "latest").resolve() == (sweeps / "a").resolve()
    assert (sweeps / "a" / "summary.md").read_text() in capsys.readouterr().out
