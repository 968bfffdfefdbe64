"""``ddpm-sample``: draw N images from a ``ddpm-train`` checkpoint with any sampler (a Hydra app).

    ddpm-sample ckpt_path=/path/to/last.ckpt                 # 64 images with the run's own sampler
    ddpm-sample ckpt_path=... sampler=dpm_solver_pp_2m sampler.steps=20
    ddpm-sample ckpt_path=... sampler=ancestral num_samples=50000 save_npz=true save_png=false
    ddpm-sample ckpt_path=... sampler=ddim sampler.eta=1.0 sampler.spacing=quadratic
    ddpm-sample ckpt_path=<conditional run> labels=balanced guidance_scale=3   # classifier-free guidance

Writes ``samples.png`` (a grid of the first ``png_max_images``) and/or ``samples.npz`` (uint8
[N, H, W, C] under ``arr_0``, ``seeds`` and, for a class-conditional model, ``labels``) into the run
directory. Unless the command line names a sampler (``sampler=<name>``), a ``ddpm-train`` checkpoint is
sampled with the sampler its run was trained with (the ``sampler`` group of the config it stores, which
drew the run's grids; built only through the allowlist of :mod:`ddpm.io.stored_config`), with the
command line's ``sampler.<key>=...`` settings; other weights with the config's sampler (DDIM, 50 steps).
The log says which and why. Image i is generated from seed ``seed + i`` (and its label), so any subset can be
regenerated alone. ``labels`` (a class index, a list, or ``balanced`` = ``i % num_classes``) asks a
class-conditional model for classes; ``guidance_scale=w`` samples with classifier-free guidance
(:mod:`ddpm.sampling.guidance`).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ddpm.cli.labels import label_cond, null_class_use
from ddpm.cli.task_wrapper import run_app, run_task
from ddpm.diffusion.denoiser import LABELS_KEY
from ddpm.errors import ConfigError
from ddpm.io.atomic import atomic_write
from ddpm.io.stored_config import instantiate_stored
from ddpm.models.shape import image_shape_of
from ddpm.sampling import iter_samples, with_guidance
from ddpm.sampling.guidance import describe_sampling
from ddpm.utils.compile import compile_for_sampling
from ddpm.utils.config import config_dir
from ddpm.utils.device import resolve_device
from ddpm.utils.images import save_image_grid, to_uint8
from ddpm.weights import LoadedModel, load_model
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


def sampler_factory(cfg: DictConfig, loaded: LoadedModel, own_settings: dict[str, Any] | None = None) -> Any:
    """``sampler(diffusion)``: with ``own_settings`` (ddpm-sample's command line named no sampler) the one
    the run was trained with, its settings replaced by ``own_settings`` (a stored config is a file's data:
    allowlisted targets only); otherwise, or for weights without a run config, ``cfg.sampler``. Logs which."""
    stored = (loaded.config or {}).get("sampler") if own_settings is not None else None
    if stored is None:
        why = "sampler=<name>" if own_settings is None else f"{loaded.source} stores no run config"
        log.info("Sampler: %s (%s)", cfg.sampler.get("_target_"), why)
        return hydra.utils.instantiate(cfg.sampler)
    fix = "pass sampler=<name> (ddim, ancestral, ...) to choose one"
    foreign = sorted(set(own_settings or {}) - set(stored))
    if foreign:
        raise ConfigError(
            f"sampler.{foreign[0]} is not a setting of the run's sampler {stored.get('_target_')} (its "
            f"settings: {', '.join(k for k in stored if not k.startswith('_'))}): {fix} with it"
        )
    stored = {**stored, **(own_settings or {})}
    factory = instantiate_stored(stored, loaded.source, "sampler", fix=fix)
    log.info(
        "Sampler: %s %s, the one the run was trained with%s (sampler=<name> chooses another)",
        stored.get("_target_"),
        {k: v for k, v in stored.items() if not k.startswith("_")},
        f", with {own_settings} from the command line" if own_settings else "",
    )
    return factory


def own_sampler_settings(cfg: DictConfig, overrides: list[str]) -> dict[str, Any] | None:
    """None when the command line ``overrides`` name a sampler (``sampler=<name>``); else the settings it
    gives (``sampler.steps=20`` -> ``{"steps": 20}``, values as composed), for the run's own sampler."""
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    if "sampler" in keys:
        return None
    names = [key.split(".", 1)[1] for key in keys if key.startswith("sampler.")]
    return {name: OmegaConf.select(cfg.sampler, name) for name in names}


def generate_images(cfg: DictConfig, own_sampler: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load the checkpoint, sample ``num_samples`` images, write PNG/NPZ; returns paths and images.

    ``own_sampler``: settings for the sampler the run was trained with, used instead of ``cfg.sampler``
    (:func:`sampler_factory`; ddpm-sample passes them when its command line names no sampler).
    """
    _check(cfg)
    device = resolve_device(cfg.get("device"))
    loaded = load_model(cfg.ckpt_path, cfg.get("pretrained"), use_ema=cfg.use_ema)
    net = loaded.net.to(device)
    scale = cfg.get("guidance_scale")
    cond = label_cond(cfg.get("labels"), int(cfg.num_samples), getattr(net, "num_classes", 0), scale)
    use = null_class_use(cfg.get("labels"), scale)
    if use is not None:
        check_null_class(loaded, use, cfg.get("null_class_trained"))
    sampler = with_guidance(sampler_factory(cfg, loaded, own_sampler)(loaded.diffusion.to(device)), scale)
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
    own = own_sampler_settings(cfg, list(HydraConfig.get().overrides.task))
    run_task(functools.partial(generate_images, own_sampler=own), cfg, usage=USAGE)


def main() -> None:
    run_app(hydra_main)


if __name__ == "__main__":
    main()
