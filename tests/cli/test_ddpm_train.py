"""The ddpm-train entry point end to end: bad input gives one clear line and overwrites nothing, fake
CIFAR-10 trains (its ``main`` in this process, as in cli/test_entry_points.py); W&B offline logging can
be read back; multirun makes one directory (and one W&B run) per job (these two as subprocesses)."""

import json
from pathlib import Path

import pytest
import torch

from tests.data.fakes import write_fake_cifar10
from tests.helpers import TINY, read_wandb_records, run_cli, run_main

FAST = [*TINY, "trainer.max_steps=2", "trainer.val_check_interval=2"]


def _error_line(result) -> str:
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.startswith("error:")]
    assert lines, result.stderr[-3000:]
    return lines[-1]


def test_missing_dataset_directory_is_one_clear_line(tmp_path, monkeypatch, capsys):
    result = run_main(
        [
            "ddpm-train",
            *FAST,
            "data=cifar10",
            "model.in_channels=3",
            "model.out_channels=3",
            "model.resolution=32",
            "model.attn_resolutions=[16]",
            f"data.data_dir={tmp_path}/nope",
            "data.download=false",
            "data.num_workers=0",
            "data.persistent_workers=false",
        ],
        tmp_path,
        monkeypatch,
        capsys,
    )
    assert result.returncode == 2
    line = _error_line(result)
    assert "nope" in line and "download" in line
    assert "Traceback" not in result.stderr


def test_wrong_image_size_names_both_sizes_and_the_fix(tmp_path, monkeypatch, capsys):
    mismatch = ["data.image_size=8", "model.resolution=16"]  # the resolution follows the size unless set
    result = run_main(["ddpm-train", *FAST, *mismatch], tmp_path, monkeypatch, capsys)
    assert result.returncode == 2
    line = _error_line(result)
    assert "8x8" in line and "16x16" in line and "model.resolution" in line


def test_unknown_config_key_is_rejected_by_name(tmp_path, monkeypatch, capsys):
    result = run_main(["ddpm-train", *FAST, "model.channels=64"], tmp_path, monkeypatch, capsys)
    assert result.returncode != 0
    assert "model.channels" in result.stderr
    assert not (tmp_path / "logs").exists(), "a rejected config must not create a run directory"


def test_corrupt_checkpoint_is_one_clear_line(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    result = run_main(["ddpm-train", *FAST, f"ckpt_path={bad}"], tmp_path, monkeypatch, capsys)
    assert result.returncode == 2
    assert "corrupt" in _error_line(result)


def test_existing_run_directory_is_not_overwritten(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    precious = run_dir / "checkpoints" / "last.ckpt"
    precious.write_bytes(b"precious")
    result = run_main(["ddpm-train", *FAST, f"hydra.run.dir={run_dir}"], tmp_path, monkeypatch, capsys)
    assert result.returncode == 2
    assert "refusing to overwrite" in _error_line(result)
    assert precious.read_bytes() == b"precious"


def test_wandb_offline_logs_config_metrics_and_samples(tmp_path):
    pytest.importorskip("wandb")
    run_dir = tmp_path / "run"
    result = run_cli(
        [
            "ddpm-train",
            *FAST,
            "logger=wandb",
            "callbacks=default",
            "callbacks.sample_grid.every_n_steps=2",
            "callbacks.sample_grid.num_samples=4",
            "trainer.log_every_n_steps=1",
            "callbacks.model_checkpoint.every_n_train_steps=2",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env={"WANDB_MODE": "offline"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    records = read_wandb_records(next(offline_runs[0].glob("run-*.wandb")))
    history = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    losses = [row["train/loss"] for row in history if "train/loss" in row]
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses)
    assert any("val/loss_ema" in row for row in history)
    assert any(row.get("samples/_type") == "images/separated" for row in history)  # the sample grid
    config = {
        item.key: json.loads(item.value_json)
        for r in records
        if r.WhichOneof("record_type") == "config"
        for item in r.config.update
    }
    assert config["model"]["_target_"] == "ddpm.models.UNet"
    assert config["diffusion"]["num_timesteps"] == 100


def test_multirun_gives_one_directory_and_one_wandb_run_per_job(tmp_path):
    result = run_cli(
        [
            "ddpm-train",
            "-m",
            *FAST,
            "logger=wandb",
            "seed=1,2",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        cwd=tmp_path,
        env={"WANDB_MODE": "offline"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name != "wandb")
    assert [p.name for p in jobs] == ["0", "1"]
    for job in jobs:
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1
    # and one more for the sweep's summary table, in the sweep directory
    assert len(list((sweep / "wandb").glob("offline-run-*"))) == 1


def test_cifar10_pipeline_on_fake_data(tmp_path, monkeypatch, capsys):
    """A fake CIFAR-10 pickle goes through the real loading code into a training step."""
    root = write_fake_cifar10(tmp_path / "cifar")
    result = run_main(
        [
            "ddpm-train",
            *FAST,
            "data=cifar10",
            f"data.data_dir={root}",
            "data.download=false",
            "data.num_workers=0",
            "data.persistent_workers=false",
            "data.pin_memory=false",
            "data.batch_size=4",
            "model.in_channels=3",
            "model.out_channels=3",
            "model.resolution=32",
            "model.attn_resolutions=[16]",
        ],
        tmp_path,
        monkeypatch,
        capsys,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path(tmp_path / "logs").exists()


def test_missing_inception_weights_stop_the_in_loop_fid_at_start_up(tmp_path, monkeypatch, capsys):
    """callbacks=eval_fid (on by default in the paper runs) looks the weights up before the first step."""
    missing = tmp_path / "nowhere" / "pt_inception-2015-12-05-6726825d.pth"
    args = [*FAST, "callbacks=eval_fid", f"callbacks.fid.metrics.inception_weights={missing}"]
    result = run_main(["ddpm-train", *args], tmp_path, monkeypatch, capsys)
    assert result.returncode == 2
    line = _error_line(result)
    assert str(missing) in line and "callbacks=default" in line
    assert not list(tmp_path.glob("logs/*/runs/*/checkpoints/*.ckpt"))  # stopped before training
