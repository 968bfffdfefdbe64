"""``ddpm-eval ... logger=wandb`` logs the report (metrics, protocol, sample grid, report.json) to W&B."""

import json
import time

import pytest

from tests.helpers import read_wandb_records

from .helpers import write_lightning_checkpoint
from .test_eval_app import eval_overrides, run_eval


def test_report_goes_to_one_wandb_run_kept_in_the_evaluation_directory(tmp_path, inception_path):
    wandb = pytest.importorskip("wandb")
    checkpoint = tmp_path / "last.ckpt"
    write_lightning_checkpoint(checkpoint, tmp_path / "train")
    out = tmp_path / "eval"
    no_nll = {"metrics.nll.enabled": "false"}
    overrides = eval_overrides(checkpoint, inception_path, tmp_path / "cache", **no_nll)
    try:
        report = run_eval([*overrides, "logger=wandb"], out)
    finally:
        wandb.finish()
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith((out / "wandb_run_id").read_text())
    fid = next(k for k in report["metrics"] if k.startswith("fid_"))
    # W&B's service process may still be flushing the offline file: wait for it (long enough for a busy
    # machine; a passing run stops waiting as soon as everything is there)
    deadline = time.time() + 300
    while True:
        records = read_wandb_records(next(runs[0].glob("run-*.wandb")))
        history = {}
        for r in records:
            if r.WhichOneof("record_type") == "history":
                items = r.history.item
                history.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
        flushed = f"eval/{fid}" in history and "eval/samples/count" in history
        if (flushed and (runs[0] / "files" / "report.json").is_file()) or time.time() > deadline:
            break
        time.sleep(0.5)
    assert history[f"eval/{fid}"] == pytest.approx(report["metrics"][fid])
    assert history["eval/samples/count"] == 1 and history["eval/samples/_type"].startswith("images/")
    config = {
        i.key: json.loads(i.value_json)
        for r in records
        if r.WhichOneof("record_type") == "config"
        for i in r.config.update
    }
    assert config["protocol"]["num_samples"] == report["protocol"]["num_samples"]
    assert (runs[0] / "files" / "report.json").is_file()
