"""Shared test utilities: composing the project's Hydra configs outside a Hydra app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from ddpm.utils.config import config_dir

REPO_ROOT = Path(__file__).resolve().parents[1]

# A tiny training setup: 16x16 digits, a small U-Net, no heavy callbacks.
TINY = [
    "data=digits",
    "data.batch_size=16",
    "model=unet_tiny",
    "model.ch=32",
    "model.ch_mult=[1,2]",
    "model.attn_resolutions=[8]",
    "diffusion.num_timesteps=100",
    "trainer=cpu",
    "trainer.max_steps=4",
    "trainer.val_check_interval=4",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks=none",
    "logger=none",
]


def compose_train(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """Compose ``train.yaml`` with overrides, with paths pointing into ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(output_dir)
        cfg.hydra.job.num = 0
        cfg.paths.root_dir = str(output_dir)
        cfg.paths.output_dir = str(output_dir)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg


def run_cli(args: list[str], cwd: Path, timeout: int = 300, env: dict | None = None):
    """Run a console entry point (e.g. ["ddpm-train", ...]) as a subprocess; returns CompletedProcess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    full_env.update(env or {})
    module = {
        "ddpm-train": "ddpm.cli.ddpm_train",
        "ddpm-eval": "ddpm.cli.ddpm_eval",
        "ddpm-sample": "ddpm.cli.ddpm_sample",
        "ddpm-export": "ddpm.cli.ddpm_export",
    }[args[0]]
    return subprocess.run(
        [sys.executable, "-m", module, *args[1:]],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_wandb_records(path: Path) -> list:
    """Decode a W&B ``run-*.wandb`` file (LevelDB-style log of ``Record`` protobufs).

    Format: a 7-byte header (":W&B", magic 0xBEE1, version), then 32 KiB blocks of chunks, each with a
    7-byte header (crc32, little-endian length, type FULL/FIRST/MIDDLE/LAST); chunks never cross blocks.
    """
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    block, pos, records, pending = 32768, 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer: skip to the next block
            pos += block - pos % block
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records
