"""Rebuild a trained :class:`DDPMLitModule` from a ``ddpm-train`` checkpoint alone.

Every checkpoint written by ``ddpm-train`` holds ``ddpm_config``: the resolved Hydra config of the
run. Its ``module`` entry re-instantiates the module (network, diffusion, loss, ...), into which the
checkpoint's ``state_dict`` (raw weights ``net.*``, EMA weights ``ema.module.*``, loss buffers such as
an importance sampler's history) is loaded strictly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import OmegaConf

from ddpm.errors import CheckpointError
from ddpm.lightning.module import DDPMLitModule


def read_checkpoint(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load`` a Lightning checkpoint, with one-line errors for missing or corrupt files."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check ckpt_path")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}): it is truncated or corrupt; "
            "use another one (e.g. an earlier step_*.ckpt)"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint of this project (no state_dict)")
    return checkpoint


def load_module(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> DDPMLitModule:
    """The DDPMLitModule of a ``ddpm-train`` checkpoint, weights loaded, in eval mode.

    Raises :class:`~ddpm.errors.CheckpointError` (one line) when the file is missing, unreadable,
    lacks ``ddpm_config`` or its weights do not fit the module the config describes.
    """
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path, map_location)
    config = checkpoint.get("ddpm_config")
    if not isinstance(config, dict) or not isinstance(config.get("module"), dict):
        raise CheckpointError(
            f"{path} has no ddpm_config with a module entry: it was not written by ddpm-train "
            "(load the weights into a module you build yourself)"
        )
    try:
        module = hydra.utils.instantiate(OmegaConf.create(config["module"]))
    except Exception as exc:
        raise CheckpointError(
            f"cannot rebuild the module of {path} from its ddpm_config ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}): is this checkout's code compatible?"
        ) from None
    if not isinstance(module, DDPMLitModule):
        raise CheckpointError(
            f"the module config of {path} builds a {type(module).__name__}, not a DDPMLitModule"
        )
    try:
        module.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise CheckpointError(
            f"the weights in {path} do not fit the module its config describes ({first[:200]}): "
            "the checkpoint is from another code version or was edited"
        ) from None
    module.run_config = config
    if isinstance(map_location, (str, torch.device)):
        module.to(map_location)
    module.eval()
    return module


__all__ = ["load_module", "read_checkpoint"]
