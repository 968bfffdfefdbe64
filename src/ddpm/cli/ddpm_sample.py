"""``ddpm-sample``: draw N images from a ``ddpm-train`` checkpoint with any sampler (a Hydra app).

    ddpm-sample ckpt_path=/path/to/last.ckpt                                  # DDIM, 50 steps, 64 images
    ddpm-sample ckpt_path=... sampler=dpm_solver_pp_2m sampler.steps=20
    ddpm-sample ckpt_path=... sampler=ancestral num_samples=50000 save_npz=true save_png=false
    ddpm-sample ckpt_path=... sampler=ddim sampler.eta=1.0 sampler.spacing=quadratic
    ddpm-sample ckpt_path=<conditional run> labels=balanced guidance_scale=3   # classifier-free guidance

Writes ``samples.png`` (a grid of the first ``png_max_images``) and/or ``samples.npz`` (uint8
[N, H, W, C] under ``arr_0``, ``seeds`` and, for a class-conditional model, ``labels``) into the run
directory. Image i is generated from seed ``seed + i`` (and its label), so any subset can be regenerated
alone. ``labels`` (a class index, a list, or ``balanced`` = ``i % num_classes``) asks a class-conditional
model for classes; ``guidance_scale=w`` samples with classifier-free guidance (:mod:`ddpm.sampling.guidance`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from ddpm.cli.labels import label_cond, null_class_use
from ddpm.cli.task_wrapper import run_app, run_task
from ddpm.diffusion.denoiser import LABELS_KEY
from ddpm.errors import ConfigError
from ddpm.io.atomic import atomic_write
from ddpm.models.shape import image_shape_of
from ddpm.sampling import iter_samples, with_guidance
from ddpm.sampling.guidance import describe_sampling
from ddpm.utils.compile import compile_for_sampling
from ddpm.utils.config import config_dir
from ddpm.utils.device import resolve_device
from ddpm.utils.images import save_image_grid, to_uint8
from ddpm.weights import load_model
from ddpm.weights.loaded import check_null_class

log = logging.getLogger(__name__)
USAGE = "ddpm-sample ckpt_path=<a ddpm-train .ckpt, a diffusers folder or a pesser state dict>"


def _check(cfg: DictConfig) -> None:
    if cfg.num_samples < 1 or cfg.batch_size < 1:
        raise ConfigError("num_samples and batch_size must be >= 1")
    if not (cfg.save_png or cfg.save_npz):
        raise ConfigError("nothing to write: set save_png=true and/or save_npz=true")


def _write(
    cfg: DictConfig, images: torch.Tensor, seeds: list[int], output_dir: Path, labels: torch.Tensor | None
) -> dict[str, Any]:
    result: dict[str, Any] = {"images": images, "seeds": seeds, "labels": labels}
    if cfg.save_png:
        result["png"] = save_image_grid(
            images[: int(cfg.png_max_images)], output_dir / "samples.png", cfg.nrow
        )
        log.info("Wrote %s", result["png"])
    if cfg.save_npz:
        array = to_uint8(images).permute(0, 2, 3, 1).numpy()
        arrays = {"arr_0": array, "seeds": np.asarray(seeds, dtype=np.int64)}
        if labels is not None:
            arrays["labels"] = labels.numpy()
        result["npz"] = atomic_write(output_dir / "samples.npz", lambda f: np.savez(f, **arrays))
        log.info("Wrote %s (%s uint8)", result["npz"], "x".join(map(str, array.shape)))
    return result


def generate_images(cfg: DictConfig) -> dict[str, Any]:
    """Load the checkpoint, sample ``num_samples`` images, write PNG/NPZ; returns paths and images."""
    _check(cfg)
    device = resolve_device(cfg.get("device"))
    loaded = load_model(cfg.ckpt_path, cfg.get("pretrained"), use_ema=cfg.use_ema)
    net = loaded.net.to(device)
    scale = cfg.get("guidance_scale")
    cond = label_cond(cfg.get("labels"), int(cfg.num_samples), getattr(net, "num_classes", 0), scale)
    use = null_class_use(cfg.get("labels"), scale)
    if use is not None:
        check_null_class(loaded, use, cfg.get("null_class_trained"))
    sampler = with_guidance(hydra.utils.instantiate(cfg.sampler)(loaded.diffusion.to(device)), scale)
    shape = image_shape_of(net, loaded.config.get("model") if loaded.config else None, cfg.get("image_shape"))
    seeds = list(range(int(cfg.seed), int(cfg.seed) + int(cfg.num_samples)))
    log.info("Sampling %d images %s with %s", len(seeds), shape, describe_sampling(sampler))
    model = compile_for_sampling(net.eval()) if cfg.get("compile") else net
    batches = iter_samples(
        model,
        sampler,
        shape,
        seeds,
        batch_size=int(cfg.batch_size),
        device=device,
        progress=bool(cfg.progress),
        cond=cond,
    )
    images = torch.cat([x for _, x in batches])
    return _write(cfg, images, seeds, Path(cfg.output_dir), cond.get(LABELS_KEY))


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="sample")
def hydra_main(cfg: DictConfig) -> None:
    run_task(generate_images, cfg, usage=USAGE)


def main() -> None:
    run_app(hydra_main)


if __name__ == "__main__":
    main()
