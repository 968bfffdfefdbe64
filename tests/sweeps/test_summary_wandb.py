"""A sweep whose jobs log to W&B gets its summary table in W&B (offline: no network)."""

from __future__ import annotations

import json
import time

import pytest

from ddpm.sweeps.callback import SweepSummaryCallback
from ddpm.sweeps.jobs import DONE
from tests.helpers import read_wandb_records

from .test_summary import make_job

WANDB = {"wandb": {"_target_": "lightning.pytorch.loggers.WandbLogger", "project": "ddpm", "offline": True}}


def history_of(run_dir, keys: set[str]) -> dict:
    """The logged history of an offline W&B run, once W&B's service has flushed ``keys`` (or 300 s)."""
    deadline = time.time() + 300
    while True:
        history = {}
        for record in read_wandb_records(next(run_dir.glob("run-*.wandb"))):
            if record.WhichOneof("record_type") == "history":
                for i in record.history.item:
                    history[i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
        if keys <= set(history) or time.time() > deadline:
            return history
        time.sleep(0.5)


def test_the_summary_table_goes_to_a_wandb_run_of_the_sweeps_group(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    for number in (0, 1):
        rows = [{"step": 5, "val/loss_ema": 0.5 + number}]
        make_job(sweep, number, [f"seed={number}"], DONE, rows, cfg={"logger": WANDB})
    try:
        SweepSummaryCallback(print_summary=False).summarize(sweep)
    finally:
        wandb.finish()
    (run,) = (sweep / "wandb").glob("offline-run-*")
    history = history_of(run, {"sweep/summary/_type", "sweep/curves/_type"})
    assert history["sweep/summary/_type"] == "table-file" and history["sweep/summary/nrows"] == 2
    assert history["sweep/curves/_type"].startswith("image")
    assert (run / "files" / "summary.csv").read_text() == (sweep / "summary.csv").read_text()
    records = read_wandb_records(next(run.glob("run-*.wandb")))
    (group,) = {r.run.run_group for r in records if r.WhichOneof("record_type") == "run"}
    assert group == "t/2026-01-01_00-00-00"  # the jobs' group: <task>/<sweep dir name>
