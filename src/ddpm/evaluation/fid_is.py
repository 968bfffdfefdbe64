"""FID, Inception Score, KID and precision/recall of generated images: their settings and stages.

One Inception pass over the samples gives the float64 sums of FID and IS (:mod:`ddpm.metrics.statistics`)
and, when KID (or precision/recall in Inception space, ``pr_features=inception``) is on, the pool-3
features (:mod:`ddpm.metrics.kid_pr`), both through the one feature loop (:mod:`ddpm.metrics.features`).
Precision/recall in VGG-16 space (``pr_features=vgg16``: Kynkaenniemi et al.'s and torch-fidelity's) is a
second pass through the same loop with :mod:`ddpm.metrics.vgg16`. ``ddpm-eval`` keeps each shard's
outputs in resumable feature :class:`~ddpm.io.shards.ShardStore` s beside the samples (``features/``,
``features_vgg16/``) and reads the features back; the in-loop callback gathers them once. The reference
statistics and features of each split come from the cache (:mod:`ddpm.metrics.reference_cache`); every
score is named by :func:`~ddpm.metrics.names.metric_name`. Used by ``ddpm-eval`` and by the in-loop
:class:`~ddpm.callbacks.evaluation.FIDCallback`, with the same :class:`FIDSettings` (the
``metrics/fid_is`` config).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ddpm.errors import ConfigError
from ddpm.evaluation.datasets import describe_datamodule, split_dataset
from ddpm.evaluation.generation import read_images
from ddpm.io.shards import ShardStore
from ddpm.metrics.features import accumulate, feature_chunks
from ddpm.metrics.kid_pr import TORCH_FIDELITY_KID_SEED, kid, precision_recall
from ddpm.metrics.names import metric_name, splits_label
from ddpm.metrics.reference_cache import (
    ReferenceFeatures,
    ReferenceSet,
    reference_features,
    reference_statistics,
)
from ddpm.metrics.statistics import (
    DEFAULT_IS_SPLITS,
    TORCH_FIDELITY_SHUFFLE_SEED,
    InceptionStatistics,
    fid,
    statistics_for,
)
from ddpm.utils.distributed import barrier
from ddpm.utils.fingerprint import fingerprint

# precision/recall's feature spaces: the name in metric names -> the layer recorded in report.json
PR_FEATURE_SPACES = {"inception": "inception_pool3", "vgg16": "vgg16_fc2_relu"}


@dataclass(frozen=True)
class FIDSettings:
    """The FID/IS/KID/PR settings: Inception (and VGG-16) weights, reference splits, IS splits, batch size,
    cache, and precision/recall's feature space (``pr_features``: ``inception`` or ``vgg16``)."""

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
    pr_features: str = "inception"
    vgg16_weights: str | None = None
    distance_batch: int = 1024

    def __post_init__(self) -> None:
        if self.pr_features not in PR_FEATURE_SPACES:
            raise ConfigError(
                f"metrics.pr_features={self.pr_features!r}: choose {' or '.join(PR_FEATURE_SPACES)}"
            )

    def inception_batch(self, device: torch.device | str) -> int:
        """``batch_size``, or by device when None: 200 on a GPU, 8 on a CPU, where small batches are
        faster (``benchmarks/inception_batch.py``: 10.4 images/s at 8 vs 6.9 at 200 on 2 cores)."""
        return int(self.batch_size or (200 if torch.device(device).type == "cuda" else 8))

    @property
    def needs_features(self) -> bool:
        """KID or precision/recall in Inception space: the metrics that need the Inception features, not
        only their sums."""
        return self.kid or (self.precision_recall and self.pr_features == "inception")

    @property
    def needs_vgg16(self) -> bool:
        """Precision/recall in VGG-16 space: a second feature pass."""
        return self.precision_recall and self.pr_features == "vgg16"

    @property
    def pr_feature_space(self) -> str:
        """The layer precision/recall is taken in, as ``report.json`` records it."""
        return PR_FEATURE_SPACES[self.pr_features]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> FIDSettings:
        """The settings named in ``values`` (a config node); other keys are ignored."""
        names = {f.name for f in fields(cls)}
        given = {k: v for k, v in dict(values or {}).items() if k in names}
        for key in ("reference_splits", "is_splits"):
            if key in given:
                given[key] = tuple(given[key])
        for key in ("cache_dir", "vgg16_weights"):
            if given.get(key) is not None:
                given[key] = str(given[key])
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


def reference_features_for(
    datamodule: Any,
    split: str,
    extractor: Any,
    settings: FIDSettings,
    *,
    device: torch.device,
    progress: bool = False,
) -> ReferenceFeatures:
    """The features of one split of ``datamodule`` in a second feature space (``extractor``'s: VGG-16 for
    precision/recall), from the cache beside the reference statistics or computed there."""
    return reference_features(
        split_dataset(datamodule, split),
        describe_datamodule(datamodule),
        split,
        extractor,
        settings.cache_dir,
        num_images=settings.num_reference_images,
        batch_size=settings.inception_batch(device),
        device=device,
        num_workers=settings.num_workers,
        progress=progress,
    )


def _check_features(items: range, arrays: dict[str, np.ndarray], names: tuple[str, ...]) -> None:
    for name in names:
        array = arrays.get(name)
        if array is None or array.dtype != np.float32 or array.ndim != 2 or array.shape[0] != len(items):
            raise ValueError(f"a feature shard of {len(items)} images needs float32 {name} [n, dim]")


def _network(extractor: Any) -> tuple[str, tuple[str, ...]]:
    """A feature network's name (``inception`` unless it has a ``name``, e.g. ``vgg16``) and the outputs
    kept per shard: the Inception's features and logits (FID, IS, KID), another's features."""
    name = str(getattr(extractor, "name", "inception"))
    return name, ("features", "logits") if name == "inception" else ("features",)


def feature_store(samples: ShardStore, extractor: Any) -> ShardStore:
    """The resumable store of the samples' outputs of a feature network (float32), shard for shard,
    beside ``samples/``, keyed by the samples' fingerprint and the network's weights: the Inception's in
    ``features/``, another network's (e.g. VGG-16) in ``features_{name}/``."""
    name, outputs = _network(extractor)
    return ShardStore(
        samples.folder.parent / ("features" if name == "inception" else f"features_{name}"),
        fingerprint(samples=samples.fingerprint, **{name: str(extractor.weights_sha256)}),
        samples.num_items,
        samples.shard_size,
        prefix="features",
        check=partial(_check_features, names=outputs),
    )


def _shard_outputs(
    extractor: Any, images: Tensor, batch_size: int, device: torch.device
) -> dict[str, np.ndarray]:
    """Float32 outputs of one shard's images (as :func:`_network` says), in batches of ``batch_size``."""
    items = torch.arange(images.shape[0])
    outputs = list(feature_chunks(extractor, [(items, images)], batch_size, device))
    arrays = {
        "features": torch.cat([f for _, f, _ in outputs]).to("cpu", torch.float32).numpy(),
        "logits": torch.cat([g for _, _, g in outputs]).to("cpu", torch.float32).numpy(),
    }
    return {name: arrays[name] for name in _network(extractor)[1]}


def shard_outputs(
    extractor: Any, samples: ShardStore, shards: Sequence[int], batch_size: int, device: torch.device
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """``(shard, arrays)`` of this rank's sample shards through ``extractor``: a finished feature shard is
    read back, the others are computed and written (the pass resumes)."""
    store = feature_store(samples, extractor)
    for shard in shards:
        arrays = store.read(shard)
        if arrays is None:
            ((_, images),) = read_images(samples, [shard])
            arrays = _shard_outputs(extractor, images, batch_size, device)
            store.write(shard, arrays)
        yield shard, arrays


def store_statistics(
    extractor: Any, samples: ShardStore, shards: Sequence[int], settings: FIDSettings, device: torch.device
) -> tuple[InceptionStatistics, ShardStore]:
    """The one Inception pass of ``ddpm-eval``: this rank's sample shards to feature shards (resumable:
    finished ones are read back); returns the all-reduced statistics and the feature store.

    Every rank calls this."""
    stats = statistics_for(extractor, samples.num_items, settings.is_splits, settings.is_shuffle_seed, device)
    for shard, arrays in shard_outputs(extractor, samples, shards, settings.inception_batch(device), device):
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
    return stats, feature_store(samples, extractor)


def store_features(
    extractor: Any, samples: ShardStore, shards: Sequence[int], settings: FIDSettings, device: torch.device
) -> Tensor:
    """A second feature pass of ``ddpm-eval`` (VGG-16 for precision/recall), resumable as the Inception's:
    this rank's sample shards to feature shards, then all features [N, dim] on every rank.

    Every rank calls this."""
    for _ in shard_outputs(extractor, samples, shards, settings.inception_batch(device), device):
        pass
    barrier()
    return stored_features(feature_store(samples, extractor))


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
    generated: Mapping[str, Tensor],
    reference: Mapping[str, Tensor],
    settings: FIDSettings,
    *,
    num: int,
    split: str,
    tag: str = "",
) -> dict[str, float]:
    """KID (``kid_{num}[_{tag}]_{split}`` and its ``_std``) and precision/recall named with their feature
    space (``precision_{inception|vgg16}_{num}[_{tag}]_{split}``, ``recall_...``) as enabled, of ``num``
    generated images' features against a split's; every rank calls this.

    :param generated: the samples' features by network: ``inception`` (KID; and precision/recall with
        ``pr_features=inception``) and ``vgg16`` (precision/recall with ``pr_features=vgg16``).
    :param reference: the split's features, by network likewise.
    """
    out: dict[str, float] = {}
    if settings.kid:
        real = reference["inception"].to(generated["inception"].device)
        mean, std = kid(
            generated["inception"], real, settings.kid_subsets, settings.kid_subset_size, settings.kid_seed
        )
        out[metric_name("kid", num, split, tag=tag)] = mean
        out[metric_name("kid", num, split, tag=tag, detail="std")] = std
    if settings.precision_recall:
        space = settings.pr_features
        real = reference[space].to(generated[space].device)
        precision, recall = precision_recall(
            generated[space], real, settings.pr_neighbours, settings.distance_batch
        )
        out[metric_name("precision", num, split, tag=tag, features=space)] = precision
        out[metric_name("recall", num, split, tag=tag, features=space)] = recall
    return out


def fid_against(stats: InceptionStatistics, reference: InceptionStatistics) -> float:
    """FID between the samples' and a reference split's statistics."""
    return fid(stats.features, reference.features)


__all__ = [
    "PR_FEATURE_SPACES",
    "FIDSettings",
    "feature_scores",
    "feature_store",
    "fid_against",
    "inception_scores",
    "reference_features_for",
    "reference_for",
    "sample_statistics",
    "shard_outputs",
    "store_features",
    "store_statistics",
    "stored_features",
]
