"""What every loader returns: a network ready to sample, its diffusion, and where they came from.

Our checkpoints (:mod:`ddpm.weights.load`), diffusers folders (:mod:`ddpm.weights.diffusers_folder`) and
pesser state dicts (:mod:`ddpm.weights.released`) all give a :class:`LoadedModel`, and check the reverse
variance a caller asks for with :func:`check_var_type`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ddpm.diffusion.gaussian import VAR_TYPES, GaussianDiffusion
from ddpm.errors import ConfigError


@dataclass
class LoadedModel:
    """A network ready to sample (eval mode), its diffusion, and where it came from."""

    net: torch.nn.Module
    diffusion: GaussianDiffusion
    image_shape: tuple[int, int, int]
    source: str
    kind: str  # "lightning", "diffusers" or "pesser"
    weights: str  # "ema", "raw" or "released"
    preset: str | None = None
    config: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def check_var_type(var_type: str | None) -> None:
    """Refuse an unknown reverse variance in one line (None: the loader's default)."""
    if var_type is not None and var_type not in VAR_TYPES:
        raise ConfigError(f"unknown var_type {var_type!r}: choose one of {', '.join(VAR_TYPES)}")


__all__ = ["LoadedModel", "check_var_type"]
