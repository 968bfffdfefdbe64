"""``ddpm-sample``: draw N images from a ``ddpm-train`` checkpoint with any sampler (a Hydra app).

    ddpm-sample ckpt_path=/path/to/last.ckpt                                  # DDIM, 50 steps, 64 images
    ddpm-sample ckpt_path=... sampler=dpm_solver_pp_2m sampler.steps=20
    ddpm-sample ckpt_path=... sampler=ancestral num_samples=50000 save_npz=true save_png=false
    ddpm-sample ckpt_path=... sampler=ddim sampler.eta=1.0 sampler.spacing=quadratic

Writes ``samples.png`` (a grid of the first ``png_max_images``) and/or ``samples.npz`` (uint8
[N, H, W, C] under ``arr_0``, and ``seeds``) into the run directory. Image i is generated from seed
``seed + i``, so any subset can be regenerated alone.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ddpm.errors import ConfigError, DDPMError
from ddpm.lightning.checkpoint import load_module
from ddpm.sampling.noise import PerSampleNoise
from ddpm.utils.config import config_dir
from ddpm.utils.images import save_image_grid, to_uint8

log = logging.getLogger("ddpm.sample")


def resolve_device(name: str | None) -> torch.device:
    if not name or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available: use device=cpu")
    return device


def image_shape_of(net: torch.nn.Module, override: Any = None) -> tuple[int, int, int]:
    """(C, H, W) from ``override`` or the network's ``in_channels`` and ``resolution``."""
    if override is not None:
        shape = tuple(int(v) for v in override)
        if len(shape) != 3:
            raise ConfigError(f"image_shape must be [C, H, W], got {list(shape)}")
        return shape  # type: ignore[return-value]
    channels, resolution = getattr(net, "in_channels", None), getattr(net, "resolution", None)
    if channels is None or resolution is None:
        raise ConfigError("cannot tell the image shape from the network: set image_shape=[C,H,W]")
    return int(channels), int(resolution), int(resolution)


class _CountingModel:
    """Advances a progress bar on every network call."""

    def __init__(self, net: torch.nn.Module, progress: Progress | None, task: Any) -> None:
        self.net, self.progress, self.task = net, progress, task

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.net(x_t, t)
        if self.progress is not None:
            self.progress.advance(self.task, x_t.shape[0])
        return out


@torch.no_grad()
def sample(cfg: DictConfig) -> dict[str, Any]:
    """Load the checkpoint, sample ``num_samples`` images, write PNG/NPZ; returns paths and images."""
    if cfg.num_samples < 1 or cfg.batch_size < 1:
        raise ConfigError("num_samples and batch_size must be >= 1")
    if not (cfg.save_png or cfg.save_npz):
        raise ConfigError("nothing to write: set save_png=true and/or save_npz=true")
    device = resolve_device(cfg.get("device"))
    module = load_module(cfg.ckpt_path, map_location="cpu").to(device)
    net = module.ema_net if cfg.use_ema else module.net
    net.eval()
    diffusion = module.diffusion
    sampler = hydra.utils.instantiate(cfg.sampler)(diffusion)
    shape = image_shape_of(net, cfg.get("image_shape"))
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    seeds = list(range(int(cfg.seed), int(cfg.seed) + int(cfg.num_samples)))
    log.info(
        "Sampling %d images %s with %s (%d network calls each) on %s",
        len(seeds),
        shape,
        type(sampler).__name__,
        sampler.num_steps,
        device,
    )
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images {task.fields[images]}/{task.fields[total_images]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    chunks = []
    with Progress(*columns, disable=not cfg.progress, transient=False) as progress:
        task = progress.add_task(
            "network calls x images", total=len(seeds) * sampler.num_steps, images=0, total_images=len(seeds)
        )
        model = _CountingModel(net, progress, task)
        for start in range(0, len(seeds), int(cfg.batch_size)):
            batch_seeds = seeds[start : start + int(cfg.batch_size)]
            noise = PerSampleNoise(batch_seeds, device)
            chunks.append(sampler.sample(model, shape, noise, device).cpu())
            progress.update(task, images=start + len(batch_seeds))
    images = torch.cat(chunks)
    result: dict[str, Any] = {"images": images, "seeds": seeds}
    if cfg.save_png:
        result["png"] = save_image_grid(
            images[: int(cfg.png_max_images)], output_dir / "samples.png", cfg.nrow
        )
        log.info("Wrote %s", result["png"])
    if cfg.save_npz:
        path = output_dir / "samples.npz"
        array = to_uint8(images).permute(0, 2, 3, 1).numpy()
        np.savez(path, arr_0=array, seeds=np.asarray(seeds, dtype=np.int64))
        result["npz"] = path
        log.info("Wrote %s (%s uint8)", path, "x".join(map(str, array.shape)))
    return result


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="sample")
def main(cfg: DictConfig) -> None:
    try:
        sample(cfg)
    except DDPMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
