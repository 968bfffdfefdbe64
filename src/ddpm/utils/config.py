"""Finding the Hydra configs and instantiating groups of objects from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from ddpm.errors import ConfigError


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
