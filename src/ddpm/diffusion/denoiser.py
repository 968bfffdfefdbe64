"""The one model call of the project: ``model(x_t, t, **cond) -> output``.

Every loss, likelihood term, sampler and callback calls the network this way. ``t`` is an int64
tensor [B] of timestep indices 0..T-1; the output is what the diffusion's ``mean_type`` and
``var_type`` say (eps, x_0, mu or v, plus the variance half for a learned variance). ``cond`` holds
optional per-example conditioning tensors with a leading batch dimension (e.g. ``class_labels`` [B]),
passed through untouched, as improved-diffusion's ``model_kwargs`` and EDM's ``class_labels``; an
unconditional call passes none. :func:`split_batch` reads ``(x0, cond)`` from a data batch.

Every conditioning kind is a key of ``cond`` and, for classifier-free guidance, a null value: a
:data:`NullCond` maps a batch's ``cond`` to the unconditional one (same keys and shapes). Class labels
are the kind this project ships: key :data:`LABELS_KEY`, null class :data:`NULL_LABEL`, null
:func:`null_labels`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from ddpm.errors import ConfigError

Cond = Mapping[str, Tensor]
# The conditioning of a batch -> its null ("unconditional") version, the same keys and shapes.
NullCond = Callable[[Cond], dict[str, Tensor]]
LABELS_KEY = "class_labels"  # the conditioning key of class labels, as EDM and diffusers name it
NULL_LABEL = -1  # the class label meaning "no class" (the null class of label dropout)
# A data batch: the images x0, a pair (x0, cond_dict) or a dict {"x0": x0, **cond}.
Batch = Tensor | Sequence[Any] | Mapping[str, Tensor]


class Model(Protocol):
    """Any callable ``model(x_t, t, **cond) -> Tensor`` (a network, a wrapper, an oracle)."""

    def __call__(self, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor: ...


def cond_slice(cond: Cond | None, start: int, stop: int) -> dict[str, Tensor]:
    """The conditioning of examples ``start:stop`` of a batch (empty when unconditional)."""
    return {key: value[start:stop] for key, value in (cond or {}).items()}


def cond_to(cond: Cond | None, device: object) -> dict[str, Tensor]:
    """The conditioning tensors moved to ``device``."""
    return {key: value.to(device) for key, value in (cond or {}).items()}


def null_labels(cond: Cond) -> dict[str, Tensor]:
    """``cond`` with every class label set to the null class :data:`NULL_LABEL` (other entries kept):
    the :data:`NullCond` of class labels."""
    labels = cond.get(LABELS_KEY)
    if labels is None:
        raise ConfigError(
            "classifier-free guidance needs class labels: give labels (e.g. labels=balanced) or set "
            "guidance_scale=null for unconditional sampling"
        )
    return {**cond, LABELS_KEY: torch.full_like(labels, NULL_LABEL)}


def split_batch(batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
    """``(x0, cond)`` of a data batch: a Tensor x0 (unconditional), a pair ``(x0, cond_dict)`` or a
    dict ``{"x0": x0, **cond}``; ``cond`` holds per-example tensors with a leading batch dimension."""
    if isinstance(batch, Tensor):
        return batch, {}
    if isinstance(batch, Mapping):
        if "x0" not in batch:
            raise ValueError(f"a dict batch needs its images under 'x0', got keys {sorted(batch)}")
        return batch["x0"], {key: value for key, value in batch.items() if key != "x0"}
    if isinstance(batch, Sequence) and len(batch) == 2 and isinstance(batch[1], Mapping):
        return batch[0], dict(batch[1])
    raise TypeError(
        "a batch must be a Tensor x0, a pair (x0, cond_dict) or a dict {'x0': x0, **cond}, got "
        f"{type(batch).__name__}"
    )


def with_images(batch: Batch, x0: Tensor) -> Batch:
    """``batch`` with its images replaced by ``x0``, in the batch's own layout (see :func:`split_batch`)."""
    if isinstance(batch, Tensor):
        return x0
    if isinstance(batch, Mapping):
        return {**batch, "x0": x0}
    return x0, split_batch(batch)[1]


__all__ = [
    "LABELS_KEY",
    "NULL_LABEL",
    "Batch",
    "Cond",
    "Model",
    "NullCond",
    "cond_slice",
    "cond_to",
    "null_labels",
    "split_batch",
    "with_images",
]
