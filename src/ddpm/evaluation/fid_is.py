"""FID and Inception Score of generated images against dataset splits: the protocol's settings and stages.

One Inception pass over the samples gives both metrics (:mod:`ddpm.evaluation.metrics`); the
reference statistics of each split come from the cache (:mod:`ddpm.evaluation.reference_stats`).
Used by ``ddpm-eval`` and by the in-loop :class:`~ddpm.callbacks.evaluation.FIDCallback`, with the
same :class:`FIDSettings` (the ``metrics/fid_is`` config).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from ddpm.evaluation.metrics import (
    DEFAULT_IS_SPLITS,
    TORCH_FIDELITY_SHUFFLE_SEED,
    InceptionStatistics,
    accumulate,
    fid,
    statistics_for,
)
from ddpm.evaluation.reference_stats import (
    ReferenceKey,
    describe_datamodule,
    reference_statistics,
    split_dataset,
)


@dataclass(frozen=True)
class FIDSettings:
    """The Inception protocol: weights, reference splits, IS splits, batch size and the statistics cache."""

    inception_weights: str | None = None
    allow_download: bool = True
    reference_splits: tuple[str, ...] = ("train", "test")
    num_reference_images: int | None = None
    is_splits: tuple[int, ...] = DEFAULT_IS_SPLITS
    is_shuffle_seed: int | None = TORCH_FIDELITY_SHUFFLE_SEED
    batch_size: int = 200
    num_workers: int = 0
    cache_dir: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> FIDSettings:
        """The settings named in ``values`` (a config node); other keys are ignored."""
        names = {f.name for f in fields(cls)}
        given = {k: v for k, v in dict(values or {}).items() if k in names}
        for key in ("reference_splits", "is_splits"):
            if key in given:
                given[key] = tuple(given[key])
        if given.get("cache_dir") is not None:
            given["cache_dir"] = str(given["cache_dir"])
        return cls(**given)


def reference_for(
    datamodule: Any,
    split: str,
    extractor: Any,
    settings: FIDSettings,
    *,
    device: torch.device,
    progress: bool = False,
) -> tuple[InceptionStatistics, ReferenceKey, bool]:
    """(statistics, key, cache hit) of one split of ``datamodule`` under ``settings``."""
    return reference_statistics(
        split_dataset(datamodule, split),
        describe_datamodule(datamodule),
        split,
        extractor,
        settings.cache_dir,
        num_images=settings.num_reference_images,
        batch_size=settings.batch_size,
        device=device,
        is_splits=settings.is_splits,
        shuffle_seed=settings.is_shuffle_seed,
        num_workers=settings.num_workers,
        progress=progress,
    )


def sample_statistics(
    extractor: Any,
    batches: Iterable[tuple[Tensor, Tensor]],
    num_samples: int,
    settings: FIDSettings,
    device: torch.device,
) -> InceptionStatistics:
    """All-reduced Inception statistics of ``(global indices, images)`` batches (every rank calls this)."""
    stats = statistics_for(extractor, num_samples, settings.is_splits, settings.is_shuffle_seed, device)
    accumulate(stats, extractor, batches, settings.batch_size, device)
    stats = stats.reduced()
    stats.check_complete()
    return stats


def fid_against(stats: InceptionStatistics, reference: InceptionStatistics) -> float:
    """FID between the samples' and a reference split's statistics."""
    return fid(stats.features, reference.features)


__all__ = ["FIDSettings", "fid_against", "reference_for", "sample_statistics"]
