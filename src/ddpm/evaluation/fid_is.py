"""FID, Inception Score, KID and precision/recall of generated images: their settings and stages.

One Inception pass over the samples gives every metric: the float64 sums of FID and IS
(:mod:`ddpm.metrics.statistics`) and, when KID or precision/recall are on, the pool-3 features
(:mod:`ddpm.metrics.kid_pr`), both through the one feature loop (:mod:`ddpm.metrics.features`).
``ddpm-eval`` keeps each shard's features and logits in a resumable feature
:class:`~ddpm.io.shards.ShardStore` beside the samples and reads the features back for KID/PR; the in-loop
callback gathers them once. The reference statistics and features of each split come from the cache
(:mod:`ddpm.metrics.reference_cache`); every score is named by :func:`~ddpm.metrics.names.metric_name`.
Used by ``ddpm-eval`` and by the in-loop :class:`~ddpm.callbacks.evaluation.FIDCallback`, with the
same :class:`FIDSettings` (the ``metrics/fid_is`` config).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ddpm.evaluation.datasets import describe_datamodule, split_dataset
from ddpm.evaluation.generation import read_images
from ddpm.io.shards import ShardStore
from ddpm.metrics.features import accumulate, feature_chunks
from ddpm.metrics.kid_pr import TORCH_FIDELITY_KID_SEED, kid, precision_recall
from ddpm.metrics.names import metric_name, splits_label
from ddpm.metrics.reference_cache import ReferenceSet, reference_statistics
from ddpm.metrics.statistics import (
    DEFAULT_IS_SPLITS,
    TORCH_FIDELITY_SHUFFLE_SEED,
    InceptionStatistics,
    fid,
    statistics_for,
)
from ddpm.utils.distributed import barrier
from ddpm.utils.fingerprint import fingerprint


@dataclass(frozen=True)
class FIDSettings:
    """The FID/IS/KID/PR settings: Inception weights, reference splits, IS splits, batch size, cache."""

    inception_weights: str | None = None
    allow_download: bool = True
    reference_splits: tuple[str, ...] = ("train", "test")
    num_reference_images: int | None = None
    is_splits: tuple[int, ...] = DEFAULT_IS_SPLITS
    is_shuffle_seed: int | None = TORCH_FIDELITY_SHUFFLE_SEED
    batch_size: int | None = None
    num_workers: int = 0
    cache_dir: str | None = None
    kid: bool = False
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    kid_seed: int = TORCH_FIDELITY_KID_SEED
    precision_recall: bool = False
    pr_neighbours: int = 3
    distance_batch: int = 1024

    def inception_batch(self, device: torch.device | str) -> int:
        """``batch_size``, or by device when None: 200 on a GPU, 8 on a CPU, where small batches are
        faster (``benchmarks/inception_batch.py``: 10.4 images/s at 8 vs 6.9 at 200 on 2 cores)."""
        return int(self.batch_size or (200 if torch.device(device).type == "cuda" else 8))

    @property
    def needs_features(self) -> bool:
        """KID or precision/recall: the metrics that need the features, not only their sums."""
        return self.kid or self.precision_recall

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
) -> ReferenceSet:
    """Statistics (and features, for KID/PR) of one split of ``datamodule`` under ``settings``; unpacks
    as ``(statistics, key, cache hit)``."""
    return reference_statistics(
        split_dataset(datamodule, split),
        describe_datamodule(datamodule),
        split,
        extractor,
        settings.cache_dir,
        num_images=settings.num_reference_images,
        batch_size=settings.inception_batch(device),
        device=device,
        is_splits=settings.is_splits,
        shuffle_seed=settings.is_shuffle_seed,
        num_workers=settings.num_workers,
        progress=progress,
        with_features=settings.needs_features,
    )


def sample_statistics(
    extractor: Any,
    batches: Iterable[tuple[Tensor, Tensor]],
    num_samples: int,
    settings: FIDSettings,
    device: torch.device,
) -> tuple[InceptionStatistics, Tensor | None]:
    """All-reduced Inception statistics of ``(global indices, images)`` batches and, for KID/PR, the
    float32 features of all ``num_samples`` images on every rank (gathered once; every rank calls this)."""
    stats = statistics_for(extractor, num_samples, settings.is_splits, settings.is_shuffle_seed, device)
    features = accumulate(
        stats,
        extractor,
        batches,
        batch_size=settings.inception_batch(device),
        device=device,
        keep_features=settings.needs_features,
    )
    stats = stats.reduced()
    stats.check_complete()
    return stats, features


def _check_features(items: range, arrays: dict[str, np.ndarray]) -> None:
    for name in ("features", "logits"):
        array = arrays.get(name)
        if array is None or array.dtype != np.float32 or array.ndim != 2 or array.shape[0] != len(items):
            raise ValueError(f"a feature shard of {len(items)} images needs float32 {name} [n, dim]")


def feature_store(samples: ShardStore, extractor: Any) -> ShardStore:
    """The resumable store of the samples' Inception features and logits (float32), shard for shard,
    in ``features/`` beside ``samples/``; keyed by the samples' fingerprint and the Inception weights."""
    key = fingerprint(samples=samples.fingerprint, inception=str(extractor.weights_sha256))
    return ShardStore(
        samples.folder.parent / "features",
        key,
        samples.num_items,
        samples.shard_size,
        prefix="features",
        check=_check_features,
    )


def _shard_outputs(
    extractor: Any, images: Tensor, batch_size: int, device: torch.device
) -> dict[str, np.ndarray]:
    """Float32 features and logits of one shard's images, in Inception batches of ``batch_size``."""
    items = torch.arange(images.shape[0])
    outputs = list(feature_chunks(extractor, [(items, images)], batch_size, device))
    return {
        "features": torch.cat([f for _, f, _ in outputs]).to("cpu", torch.float32).numpy(),
        "logits": torch.cat([g for _, _, g in outputs]).to("cpu", torch.float32).numpy(),
    }


def store_statistics(
    extractor: Any, samples: ShardStore, shards: Sequence[int], settings: FIDSettings, device: torch.device
) -> tuple[InceptionStatistics, ShardStore]:
    """The one Inception pass of ``ddpm-eval``: this rank's sample shards to feature shards (resumable:
    finished ones are read back); returns the all-reduced statistics and the feature store.

    Every rank calls this."""
    features = feature_store(samples, extractor)
    stats = statistics_for(extractor, samples.num_items, settings.is_splits, settings.is_shuffle_seed, device)
    for shard in shards:
        arrays = features.read(shard)
        if arrays is None:
            ((_, images),) = read_images(samples, [shard])
            arrays = _shard_outputs(extractor, images, settings.inception_batch(device), device)
            features.write(shard, arrays)
        items = samples.ranges[shard]
        indices = torch.arange(items.start, items.stop, dtype=torch.long)
        stats.update(
            torch.from_numpy(arrays["features"]).to(device),
            torch.from_numpy(arrays["logits"]).to(device),
            indices,
        )
    barrier()
    stats = stats.reduced()
    stats.check_complete()
    return stats, features


def stored_features(store: ShardStore) -> Tensor:
    """All float32 features of a finished feature store [N, dim] (read on every rank, when needed)."""
    return torch.cat([torch.from_numpy(a["features"]) for _, a in store.iter_shards(range(store.num_shards))])


def inception_scores(
    stats: InceptionStatistics, num: int | None, split: str | None = None, *, tag: str = "", std: bool = True
) -> dict[str, float]:
    """IS for every split count: ``is_{num}[_{tag}][_{split}]_10splits`` (the mean over the splits), with
    ``std`` its ``..._10splits_std``, and ``..._1split`` (names: :func:`~ddpm.metrics.names.metric_name`)."""
    out: dict[str, float] = {}
    for splits in stats.is_splits:
        mean, spread = stats.inception_score(splits)
        out[metric_name("is", num, split, tag=tag, detail=splits_label(splits))] = mean
        if splits > 1 and std:
            out[metric_name("is", num, split, tag=tag, detail=f"{splits_label(splits)}_std")] = spread
    return out


def feature_scores(
    generated: Tensor, reference: Tensor, settings: FIDSettings, *, num: int, split: str, tag: str = ""
) -> dict[str, float]:
    """KID (``kid_{num}[_{tag}]_{split}`` and its ``_std``) and ``precision_...`` / ``recall_...`` as
    enabled, of ``num`` generated images' features against a split's; every rank calls this."""
    reference = reference.to(generated.device)
    out: dict[str, float] = {}
    if settings.kid:
        mean, std = kid(
            generated, reference, settings.kid_subsets, settings.kid_subset_size, settings.kid_seed
        )
        out[metric_name("kid", num, split, tag=tag)] = mean
        out[metric_name("kid", num, split, tag=tag, detail="std")] = std
    if settings.precision_recall:
        precision, recall = precision_recall(
            generated, reference, settings.pr_neighbours, settings.distance_batch
        )
        out[metric_name("precision", num, split, tag=tag)] = precision
        out[metric_name("recall", num, split, tag=tag)] = recall
    return out


def fid_against(stats: InceptionStatistics, reference: InceptionStatistics) -> float:
    """FID between the samples' and a reference split's statistics."""
    return fid(stats.features, reference.features)


__all__ = [
    "FIDSettings",
    "feature_scores",
    "feature_store",
    "fid_against",
    "inception_scores",
    "reference_for",
    "sample_statistics",
    "store_statistics",
    "stored_features",
]
