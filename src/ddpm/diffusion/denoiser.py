"""The one model call of the project: ``model(x_t, t, **cond) -> output``.

Every loss, likelihood term, sampler and callback calls the network this way. ``t`` is an int64
tensor [B] of timestep indices 0..T-1; the output is what the diffusion's ``mean_type`` and
``var_type`` say (eps, x_0 or mu, plus the variance half for a learned variance). ``cond`` holds
optional per-example conditioning tensors with a leading batch dimension (e.g. ``class_labels`` [B]),
passed through untouched, as improved-diffusion's ``model_kwargs`` and EDM's ``class_labels``; an
unconditional call passes none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from torch import Tensor

Cond = Mapping[str, Tensor]


class Model(Protocol):
    """Any callable ``model(x_t, t, **cond) -> Tensor`` (a network, a wrapper, an oracle)."""

    def __call__(self, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor: ...


def cond_slice(cond: Cond | None, start: int, stop: int) -> dict[str, Tensor]:
    """The conditioning of examples ``start:stop`` of a batch (empty when unconditional)."""
    return {key: value[start:stop] for key, value in (cond or {}).items()}


def cond_to(cond: Cond | None, device: object) -> dict[str, Tensor]:
    """The conditioning tensors moved to ``device``."""
    return {key: value.to(device) for key, value in (cond or {}).items()}


__all__ = ["Cond", "Model", "cond_slice", "cond_to"]
