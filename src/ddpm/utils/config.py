"""Finding the Hydra configs, the project's OmegaConf resolvers, and instantiating groups of objects.

Importing this module registers the resolvers, so every place that composes the configs (the entry
points, the tests' compose helpers) imports it first:

- ``ddpm_out_channels``: a network's output channels from its input channels and the diffusion's
  ``var_type``, doubled for a learned variance (mean and variance halves). The model configs say
  ``out_channels: ${ddpm_out_channels:${.in_channels},${oc.select:diffusion.var_type,fixed_large}}``
  (fixed_large, the paper's CIFAR-10 choice, when a model config is loaded alone). Checkpoints store
  the resolved number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from ddpm.diffusion.gaussian import output_channels_factor
from ddpm.errors import ConfigError


def out_channels_for(in_channels: int, var_type: str) -> int:
    """Output channels of a network for ``var_type`` (the ``ddpm_out_channels`` resolver)."""
    return int(in_channels) * output_channels_factor(var_type)


OmegaConf.register_new_resolver("ddpm_out_channels", out_channels_for, replace=True)


def config_dir() -> Path:
    """The ``configs/`` directory: inside the installed package, or at the root of a checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "configs", package.parents[1] / "configs"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ConfigError(f"cannot find the configs directory next to {package}: reinstall with `pip install .`")


def instantiate_dict(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group that has a ``_target_`` (callbacks, loggers)."""
    if not cfg:
        return []
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"expected a mapping of configs with _target_, got {type(cfg).__name__}")
    return [hydra.utils.instantiate(node) for node in cfg.values() if node and "_target_" in node]
