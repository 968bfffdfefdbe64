"""Shared test utilities: composing the project's Hydra configs outside a Hydra app, running the entry points,
small U-Nets, a quiet Lightning trainer and a trained checkpoint, and the environment of gloo processes."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from ddpm.models import UNet
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


# The console scripts (pyproject.toml's [project.scripts]): each calls its module's ``main``.
ENTRY_POINTS = {
    "ddpm-train": "ddpm.cli.ddpm_train",
    "ddpm-eval": "ddpm.cli.ddpm_eval",
    "ddpm-sample": "ddpm.cli.ddpm_sample",
    "ddpm-export": "ddpm.cli.ddpm_export",
}


def run_cli(args: list[str], cwd: Path, timeout: int = 300, env: dict | None = None):
    """Run a console entry point (e.g. ["ddpm-train", ...]) as a subprocess; returns CompletedProcess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", ENTRY_POINTS[args[0]], *args[1:]],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_main(args: list[str], cwd: Path, monkeypatch, capsys) -> subprocess.CompletedProcess:
    """:func:`run_cli` in this process: the entry point's ``main`` as its console script calls it (``argv``,
    start directory ``cwd``). For the error contract's many cases, where a new interpreter would cost
    seconds a case; every entry point keeps real subprocess tests (run_cli) too."""
    import importlib

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", list(args))
    capsys.readouterr()  # what this test printed before
    try:
        importlib.import_module(ENTRY_POINTS[args[0]]).main()
        code = 0
    except SystemExit as exited:
        code = exited.code if isinstance(exited.code, int) else int(exited.code is not None)
    printed = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, printed.out, printed.err)


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


def tiny_unet(
    channels: int = 3,
    resolution: int = 8,
    seed: int = 0,
    scale: float | None = 0.05,
    **unet: object,
) -> UNet:
    """A small U-Net (ch 32, one residual block a level, attention at resolution/2; ``unet`` overrides any
    of these), seeded. ``scale``: every weight matrix drawn N(0, scale^2), so that the output depends on the
    input (the default init zeroes the output layers); ``None`` keeps the network's own init."""
    torch.manual_seed(seed)
    kwargs = {"in_channels": channels, "out_channels": channels, "resolution": resolution, "dropout": 0.0}
    kwargs |= {"ch": 32, "ch_mult": (1, 2), "num_res_blocks": 1, "attn_resolutions": (resolution // 2,)}
    net = UNet(**{**kwargs, **unet})
    if scale is not None:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in net.parameters():
                if p.dim() > 1:
                    p.copy_(torch.randn(p.shape, generator=generator) * scale)
    return net


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter (zero-initialised ones included) with O(1)-scaled random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


def quiet_trainer(**kwargs: object):
    """A Lightning ``Trainer`` on the CPU that logs, saves and prints nothing unless ``kwargs`` say so."""
    import lightning as L

    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    return L.Trainer(**{"accelerator": "cpu", **quiet, "enable_model_summary": False, **kwargs})


def fit_checkpoint(cfg: DictConfig, path: Path, module=None, limit_val_batches: int = 0) -> Path:
    """Train ``module`` (default: ``cfg.module``) on ``cfg.data`` for ``cfg.trainer.max_steps`` steps on one
    thread and save a ``ddpm-train`` style checkpoint (the run's config stored with it) at ``path``."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from ddpm.callbacks.run_config import RunConfigCallback

    module = instantiate(cfg.module) if module is None else module
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = quiet_trainer(
            callbacks=[RunConfigCallback(OmegaConf.to_container(cfg, resolve=True))],
            max_steps=cfg.trainer.max_steps,
            limit_val_batches=limit_val_batches,
            use_distributed_sampler=False,
        )
        trainer.fit(module, datamodule=instantiate(cfg.data))
        trainer.save_checkpoint(path)
    finally:
        torch.set_num_threads(threads)
    return path


def free_port() -> int:
    """A TCP port free now on 127.0.0.1 (released again: a process may take it before the caller binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gloo_env(port: int | str, rank: int | None = None, world: int | None = None) -> dict[str, str]:
    """This process's environment for a torch.distributed (gloo) process on 127.0.0.1:``port``: one thread,
    unbuffered output, and the variables of ``rank`` of ``world`` (none: Lightning's launcher sets them)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "MASTER_ADDR": "127.0.0.1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    env["MASTER_PORT"] = str(port)
    if rank is not None:
        env |= {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)}
    return env


def on_a_free_port(launch) -> None:
    """Run ``launch(port) -> (ok, log)``; once more on a fresh port if it failed.

    ``free_port`` releases the port before the processes bind it, so another process can take it in
    between (seen once in ~5 full-suite runs); a genuine failure fails twice and is reported.
    """
    ok, log = launch(free_port())
    if not ok:
        ok, log = launch(free_port())
    assert ok, log
