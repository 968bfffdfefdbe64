"""Load a model to evaluate: our Lightning checkpoints (EMA weights by default) or released weights."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ddpm.errors import CheckpointError
from ddpm.evaluation.pretrained import (
    LoadedModel,
    is_diffusers_folder,
    load_diffusers_folder,
    load_pesser_state_dict,
)
from ddpm.lightning.checkpoint import load_module

log = logging.getLogger(__name__)


def _image_shape(net: torch.nn.Module, config: dict[str, Any]) -> tuple[int, int, int]:
    channels, resolution = getattr(net, "in_channels", None), getattr(net, "resolution", None)
    if channels is None or resolution is None:
        model_cfg = config.get("model") or {}
        channels, resolution = model_cfg.get("in_channels"), model_cfg.get("resolution")
    if channels is None or resolution is None:
        raise CheckpointError(
            "cannot tell the image shape of the checkpoint's network (no in_channels/resolution)"
        )
    return int(channels), int(resolution), int(resolution)


def load_lightning_checkpoint(path: str | Path, use_ema: bool = True) -> LoadedModel:
    """Rebuild the LightningModule from the checkpoint's ``ddpm_config`` and take its EMA network."""
    module = load_module(path)
    config = module.run_config or {}
    net = module.ema_net if use_ema else module.net
    notes = []
    if not use_ema:
        notes.append(
            "raw (non-EMA) weights: expect a much worse FID than the paper's (about 12 vs 3.2 on CIFAR-10)"
        )
        log.warning("Evaluating the raw weights of %s: %s", path, notes[-1])
    return LoadedModel(
        net.eval(),
        module.diffusion,
        _image_shape(net, config),
        str(path),
        "lightning",
        "ema" if use_ema else "raw",
        None,
        config,
        notes,
    )


def _read(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}): it is truncated or corrupt"
        ) from None


def load_model(
    path: str | Path,
    preset: str | None = None,
    use_ema: bool = True,
    var_type: str | None = None,
) -> LoadedModel:
    """Any supported checkpoint: a diffusers folder, one of our ``.ckpt`` files, or a pesser state dict."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist: check checkpoint=...")
    if path.is_dir():
        if not is_diffusers_folder(path):
            raise CheckpointError(
                f"{path} is a directory without config.json or unet/config.json: not a diffusers model folder"
            )
        return load_diffusers_folder(path, preset, var_type)
    obj = _read(path)
    if isinstance(obj, dict) and ("ddpm_config" in obj or "pytorch-lightning_version" in obj):
        if preset is not None:
            log.warning("pretrained=%s is ignored: our checkpoints store their own config", preset)
        del obj
        return load_lightning_checkpoint(path, use_ema)
    return load_pesser_state_dict(path, preset, var_type=var_type, state_dict=obj)
