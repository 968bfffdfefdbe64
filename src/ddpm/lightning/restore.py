"""Rebuild a trained :class:`DDPMLitModule` from a ``ddpm-train`` checkpoint alone.

Every checkpoint written by ``ddpm-train`` holds ``ddpm_config`` (written by
:class:`~ddpm.callbacks.run_config.RunConfigCallback`): the resolved Hydra config of the run. Its
``module`` entry re-instantiates the module (network, diffusion, loss, ...), into which the
checkpoint's ``state_dict`` (raw weights ``net.*``, EMA weights ``ema.module.*``, loss buffers such as
an importance sampler's history) is loaded strictly. The stored config is data from a file: it is built
through :func:`ddpm.io.stored_config.instantiate_stored`, which refuses any ``_target_`` that is not one
of this project's classes before anything runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ddpm.errors import CheckpointError
from ddpm.io.checkpoint_file import read_lightning_checkpoint
from ddpm.io.stored_config import StoredConfigError, instantiate_stored
from ddpm.lightning.module import DDPMLitModule


def checkpoint_config(checkpoint: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """The run config stored in a checkpoint (it must have a ``module`` entry)."""
    config = checkpoint.get("ddpm_config")
    if not isinstance(config, dict) or not isinstance(config.get("module"), dict):
        raise CheckpointError(
            f"{source} has no ddpm_config with a module entry: it was not written by ddpm-train "
            "(load the weights into a module you build yourself)"
        )
    return config


def _instantiate(config: dict[str, Any], source: str | Path) -> DDPMLitModule:
    """The module of ``config["module"]``, built from this project's classes only (ddpm.io.stored_config)."""
    try:
        module = instantiate_stored(config["module"], source, "module")
    except StoredConfigError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(
            f"cannot rebuild the module of {source} from its ddpm_config ({type(exc).__name__}: {first}): "
            "is this checkout's code compatible?"
        ) from None
    if not isinstance(module, DDPMLitModule):
        raise CheckpointError(
            f"the module config of {source} builds a {type(module).__name__}, not a DDPMLitModule"
        )
    return module


def module_from_checkpoint(checkpoint: dict[str, Any], source: str | Path) -> DDPMLitModule:
    """The module a loaded checkpoint describes, with its weights, in eval mode (on the CPU)."""
    module = _instantiate(checkpoint_config(checkpoint, source), source)
    try:
        module.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise CheckpointError(
            f"the weights in {source} do not fit the module its config describes ({first[:200]}): "
            "the checkpoint is from another code version or was edited"
        ) from None
    return module.eval()


def load_module(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> DDPMLitModule:
    """The DDPMLitModule of a ``ddpm-train`` checkpoint, weights loaded, in eval mode.

    Raises :class:`~ddpm.errors.CheckpointError` (one line) when the file is missing, unreadable,
    carries pickled objects, lacks ``ddpm_config``, names a ``_target_`` that is not a class of this
    project, or its weights do not fit the module it describes.
    """
    module = module_from_checkpoint(read_lightning_checkpoint(ckpt_path), ckpt_path)
    return module.to(map_location)


__all__ = ["checkpoint_config", "load_module", "module_from_checkpoint"]
