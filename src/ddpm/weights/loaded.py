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
    # a class-conditional model's label dropout in training (> 0: its null class was trained); None: not
    # recorded (a diffusers folder from elsewhere or from an older ddpm-export), or an unconditional model
    class_dropout: float | None = None


def check_null_class(loaded: LoadedModel, use: str, trained: bool | None = None) -> None:
    """Refuse ``use`` (guidance, unconditional samples, the unconditional NLL) in one line where the null
    class of a class-conditional model was not trained (``class_dropout=0``) or is not known to be.

    ``trained``: the user's word for it (``null_class_trained=true|false``), which replaces the record.
    """
    if not getattr(loaded.net, "num_classes", 0) or trained is True:
        return
    if trained is False:
        raise ConfigError(
            f"{use} uses the null class of {loaded.source}, which null_class_trained=false calls "
            "untrained: sample with class labels and no guidance, or drop null_class_trained=false"
        )
    if loaded.class_dropout is None:
        raise ConfigError(
            f"{use} uses the null class of {loaded.source}, which does not record its class_dropout (whether "
            "the null class was trained): add null_class_trained=true if it was trained with label dropout"
        )
    if loaded.class_dropout <= 0:
        raise ConfigError(
            f"{use} uses the null class of {loaded.source}, which was trained with class_dropout=0 (its "
            "null class is untrained): sample with class labels and no guidance, or retrain with "
            "model.class_dropout=0.1"
        )


def check_var_type(var_type: str | None) -> None:
    """Refuse an unknown reverse variance in one line (None: the loader's default)."""
    if var_type is not None and var_type not in VAR_TYPES:
        raise ConfigError(f"unknown var_type {var_type!r}: choose one of {', '.join(VAR_TYPES)}")


__all__ = ["LoadedModel", "check_null_class", "check_var_type"]
