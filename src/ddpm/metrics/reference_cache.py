"""Inception statistics of a dataset split, computed once and cached on disk.

The cache file name and its stored key cover everything the statistics depend on: the dataset, the
split, the image shape, the number of images, the SHA-256 of the Inception weights, the IS settings
and a fingerprint of the pixels of a few images (so a different data directory with the same name
and size is not mistaken for the real one). A file whose key differs, that cannot be read, or whose
checksum does not match its contents is rebuilt, never trusted. Writes go through the project's one
atomic writer, so an interrupted write leaves no half-written cache.

Under DDP every rank takes part: if any rank misses the cache, all ranks compute their share of the
images and the sums are all-reduced; rank 0 writes the file.

The pool-3 features themselves (float32 [n, 2048], for KID and precision/recall) are cached on request
in a second file beside the statistics, ``<statistics name>-features.pt``, under the same key, from
the same Inception pass. A statistics file written without features stays valid: only the features
are computed and written then (the cached statistics are kept as they are). Both files are written and
read by the one pair :func:`save_cached` / :func:`load_cached`, told apart by their :class:`CacheKind`.

The features of a split in a second feature space (VGG-16's, for precision/recall:
:func:`reference_features`) are cached the same way, beside the statistics, under a :class:`FeaturesKey`:
the split's images and that network's weights (the Inception and the IS settings play no part), in
``<dataset>-<split>-<shape>-n<count>-<digest>-<space>-features.pt``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from ddpm.diffusion.denoiser import split_batch
from ddpm.io.atomic import atomic_save_torch
from ddpm.metrics.features import accumulate, gathered_features
from ddpm.metrics.statistics import (
    DEFAULT_IS_SPLITS,
    TORCH_FIDELITY_SHUFFLE_SEED,
    InceptionStatistics,
    statistics_for,
)
from ddpm.utils.distributed import any_rank, barrier, rank_and_world
from ddpm.utils.fingerprint import data_fingerprint
from ddpm.utils.progress import progress_bar

log = logging.getLogger(__name__)

CACHE_FORMAT = "ddpm-reference-stats-v1"
FEATURES_FORMAT = "ddpm-reference-features-v1"
DATA_PROBES = 8  # images of a split whose pixels are part of its key


class _Key:
    """What the cache keys share: a JSON-able dict of their fields, its digest, and the file name stem."""

    dataset: str
    split: str
    image_shape: tuple[int, int, int]
    num_images: int

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)  # type: ignore[call-overload]  # every key class is a dataclass
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def _stem(self) -> str:
        c, h, w = self.image_shape
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.dataset)
        return f"{name}-{self.split}-{c}x{h}x{w}-n{self.num_images}-{self.digest()[:16]}"


@dataclass(frozen=True)
class ReferenceKey(_Key):
    """Everything reference statistics depend on; a change in any field is a cache miss."""

    dataset: str
    split: str
    image_shape: tuple[int, int, int]
    num_images: int
    inception_sha256: str
    data_fingerprint: str
    is_splits: tuple[int, ...] = DEFAULT_IS_SPLITS
    shuffle_seed: int | None = TORCH_FIDELITY_SHUFFLE_SEED

    def filename(self) -> str:
        return f"{self._stem()}.pt"

    def features_filename(self) -> str:
        return f"{self._stem()}-features.pt"


@dataclass(frozen=True)
class FeaturesKey(_Key):
    """Everything a split's features in a second feature space depend on: its images and the weights of
    the network (``feature_space``, e.g. ``vgg16_fc2_relu``); a change in any field is a cache miss."""

    dataset: str
    split: str
    image_shape: tuple[int, int, int]
    num_images: int
    data_fingerprint: str
    feature_space: str
    weights_sha256: str

    def filename(self) -> str:
        return f"{self._stem()}-{self.feature_space}-features.pt"


@dataclass
class ReferenceSet:
    """A split's statistics, its key, whether it came from the cache, and (on request) its features.

    Unpacks as ``stats, key, cache_hit``.
    """

    stats: InceptionStatistics
    key: ReferenceKey
    hit: bool
    features: Tensor | None = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.stats, self.key, self.hit))


def _checksum(tensors: Sequence[Tensor]) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheKind:
    """One kind of cache file: its format tag and payload field, how its value is stored (``encode``),
    which tensors the checksum covers, and how a stored value is checked and rebuilt (``decode``, which
    raises on anything invalid)."""

    label: str
    format: str
    field: str
    encode: Callable[[Any], Any]
    tensors: Callable[[Any], Sequence[Tensor]]
    decode: Callable[[Any, ReferenceKey], Any]


def _decode_statistics(state: dict, key: ReferenceKey) -> InceptionStatistics:
    stats = InceptionStatistics.from_state_dict(state)
    if not all(bool(torch.isfinite(t).all()) for t in state["tensors"]):
        raise ValueError("non-finite values")
    stats.check_complete()
    if stats.num != key.num_images:
        raise ValueError(f"{stats.num} images instead of {key.num_images}")
    return stats


def _decode_features(features: Tensor, key: ReferenceKey) -> Tensor:
    if features.dtype != torch.float32 or features.ndim != 2 or features.shape[0] != key.num_images:
        raise ValueError(f"features of shape {tuple(features.shape)} for {key.num_images} images")
    if not bool(torch.isfinite(features).all()):
        raise ValueError("non-finite values")
    return features


STATISTICS = CacheKind(
    "statistics",
    CACHE_FORMAT,
    "stats",
    encode=lambda stats: stats.state_dict(),
    tensors=lambda state: state["tensors"],
    decode=_decode_statistics,
)
FEATURES = CacheKind(
    "features",
    FEATURES_FORMAT,
    "features",
    encode=lambda features: features.detach().cpu().to(torch.float32).contiguous(),
    tensors=lambda features: [features],
    decode=_decode_features,
)


def save_cached(path: str | Path, kind: CacheKind, key: ReferenceKey, value: Any) -> Path:
    """Write ``value`` (statistics or features, as ``kind`` says) with its key and checksum, atomically."""
    stored = kind.encode(value)
    payload = {
        "format": kind.format,
        "key": key.as_dict(),
        kind.field: stored,
        "checksum": _checksum(kind.tensors(stored)),
    }
    return atomic_save_torch(path, payload)


def load_cached(path: str | Path, kind: CacheKind, key: ReferenceKey) -> Any | None:
    """The cached value if the file exists, is intact and has exactly this key; else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != kind.format or payload.get("key") != key.as_dict():
            log.warning("Reference %s %s belong to another key: recomputing them", kind.label, path)
            return None
        stored = payload[kind.field]
        if _checksum(kind.tensors(stored)) != payload["checksum"]:
            raise ValueError("checksum mismatch")
        return kind.decode(stored, key)
    except Exception as exc:  # truncated, garbage, tampered, wrong layout
        log.warning(
            "Reference %s %s are corrupt (%s: %s): recomputing them",
            kind.label,
            path,
            type(exc).__name__,
            exc,
        )
        return None


def _indexed(batches: Iterable[Any], indices: Sequence[int]) -> Iterator[tuple[Tensor, Tensor]]:
    """``(global indices, images)`` of the data batches of the images ``indices``, in order."""
    start = 0
    for batch in batches:
        images, _ = split_batch(batch)
        yield torch.tensor(indices[start : start + images.shape[0]], dtype=torch.long), images
        start += images.shape[0]


def _split_batches(
    dataset: Dataset, num_images: int, batch_size: int, num_workers: int, progress: str | None
) -> Iterator[tuple[Tensor, Tensor]]:
    """This rank's share (images r, r + world, ...) of the first ``num_images`` of ``dataset`` as
    ``(global indices, images)`` batches; ``progress``: the description of rank 0's progress bar."""
    rank, world = rank_and_world()
    indices = list(range(rank, num_images, world))
    loader = DataLoader(
        Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    batches = progress_bar(
        loader, enabled=bool(progress) and rank == 0, description=progress or "", total=len(loader)
    )
    return _indexed(batches, indices)


def compute_statistics(
    dataset: Dataset,
    extractor: torch.nn.Module,
    key: ReferenceKey,
    *,
    batch_size: int = 100,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    progress: bool = False,
    keep_features: bool = False,
) -> tuple[InceptionStatistics, Tensor | None]:
    """Inception statistics of the images ``0..key.num_images-1`` of ``dataset`` under the key's IS
    settings, sharded over the ranks, and (``keep_features``) their float32 features [num_images, dim] on
    every rank, from the same pass."""
    stats = statistics_for(extractor, key.num_images, key.is_splits, key.shuffle_seed, device)
    what = "features" if keep_features else "statistics"
    description = f"{key.dataset}/{key.split} {what}" if progress else None
    features = accumulate(
        stats,
        extractor,
        _split_batches(dataset, key.num_images, batch_size, num_workers, description),
        batch_size=batch_size,
        device=device,
        keep_features=keep_features,
    )
    return stats.reduced(), None if features is None else features.cpu()


def compute_features(
    dataset: Dataset,
    extractor: torch.nn.Module,
    key: FeaturesKey,
    *,
    batch_size: int = 100,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    progress: bool = False,
) -> Tensor:
    """The float32 features [num_images, dim] of the images ``0..key.num_images-1`` of ``dataset``,
    sharded over the ranks and gathered on every rank (every rank must call this)."""
    description = f"{key.dataset}/{key.split} {key.feature_space} features" if progress else None
    batches = _split_batches(dataset, key.num_images, batch_size, num_workers, description)
    features = gathered_features(extractor, batches, key.num_images, batch_size=batch_size, device=device)
    return features.cpu()


def _probes(dataset: Dataset, num_images: int) -> Iterator[Tensor]:
    """``DATA_PROBES`` evenly spaced images [1, C, H, W] of the first ``num_images`` of ``dataset``."""
    count = min(DATA_PROBES, num_images)
    for k in range(count):
        yield split_batch(dataset[(k * (num_images - 1)) // max(count - 1, 1)])[0][None]


def _split_identity(
    dataset: Dataset, dataset_name: str, split: str, num_images: int | None
) -> dict[str, Any]:
    """What identifies the first ``num_images`` (all: None) of a split in a cache key: its name, shape,
    count and a fingerprint of its pixels."""
    total = len(dataset)  # type: ignore[arg-type]
    num_images = total if num_images is None else int(num_images)
    if not 2 <= num_images <= total:
        raise ValueError(
            f"{dataset_name}/{split} has {total} images; cannot use {num_images} as the reference"
        )
    return {
        "dataset": dataset_name,
        "split": split,
        "image_shape": tuple(int(s) for s in split_batch(dataset[0])[0].shape),
        "num_images": num_images,
        "data_fingerprint": data_fingerprint(total, _probes(dataset, num_images)),
    }


def reference_key(
    dataset: Dataset,
    dataset_name: str,
    split: str,
    extractor: torch.nn.Module,
    *,
    num_images: int | None,
    is_settings: tuple[Sequence[int], int | None] = (DEFAULT_IS_SPLITS, TORCH_FIDELITY_SHUFFLE_SEED),
) -> ReferenceKey:
    """The cache key of the first ``num_images`` (all: None) of a split; ``is_settings``: (IS splits,
    shuffle seed)."""
    return ReferenceKey(
        **_split_identity(dataset, dataset_name, split, num_images),
        inception_sha256=str(extractor.weights_sha256),
        is_splits=tuple(int(s) for s in is_settings[0]),
        shuffle_seed=is_settings[1],
    )


def features_key(
    dataset: Dataset, dataset_name: str, split: str, extractor: torch.nn.Module, *, num_images: int | None
) -> FeaturesKey:
    """The cache key of the features of the first ``num_images`` (all: None) of a split in ``extractor``'s
    feature space (its ``feature_space`` and ``weights_sha256`` attributes)."""
    return FeaturesKey(
        **_split_identity(dataset, dataset_name, split, num_images),
        feature_space=str(extractor.feature_space),
        weights_sha256=str(extractor.weights_sha256),
    )


def _cached(key: ReferenceKey, cache_dir: str | Path | None, with_features: bool) -> ReferenceSet:
    """What the cache holds for ``key``: statistics and features (None where missing or invalid)."""
    if cache_dir is None:
        return ReferenceSet(None, key, False)  # type: ignore[arg-type]
    stats = load_cached(Path(cache_dir) / key.filename(), STATISTICS, key)
    features = (
        load_cached(Path(cache_dir) / key.features_filename(), FEATURES, key) if with_features else None
    )
    return ReferenceSet(stats, key, False, features)


def reference_statistics(
    dataset: Dataset,
    dataset_name: str,
    split: str,
    extractor: torch.nn.Module,
    cache_dir: str | Path | None,
    num_images: int | None = None,
    batch_size: int = 100,
    device: torch.device | str = "cpu",
    is_splits: Sequence[int] = DEFAULT_IS_SPLITS,
    shuffle_seed: int | None = TORCH_FIDELITY_SHUFFLE_SEED,
    num_workers: int = 0,
    progress: bool = False,
    with_features: bool = False,
) -> ReferenceSet:
    """Statistics of the first ``num_images`` (all by default) of a split, and with ``with_features``
    their features: a :class:`ReferenceSet`, which unpacks as ``(stats, key, cache hit)``.

    ``extractor`` must have a ``weights_sha256`` attribute (see
    :class:`~ddpm.metrics.inception.InceptionFeatureExtractor`). With ``cache_dir=None`` nothing is
    cached. Every rank must call this.
    """
    key = reference_key(
        dataset, dataset_name, split, extractor, num_images=num_images, is_settings=(is_splits, shuffle_seed)
    )
    cached = _cached(key, cache_dir, with_features)
    stats_missing = any_rank(cached.stats is None, device)
    if not stats_missing and not any_rank(with_features and cached.features is None, device):
        log.info(
            "Reference statistics of %s/%s (%d images) from %s",
            dataset_name,
            split,
            key.num_images,
            cache_dir,
        )
        return ReferenceSet(cached.stats, key, True, cached.features)
    stats, features = compute_statistics(
        dataset,
        extractor,
        key,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        progress=progress,
        keep_features=with_features,
    )
    if cache_dir is not None and rank_and_world()[0] == 0:
        if stats_missing:
            save_cached(Path(cache_dir) / key.filename(), STATISTICS, key, stats)
        if features is not None:
            save_cached(Path(cache_dir) / key.features_filename(), FEATURES, key, features)
        log.info("Cached reference statistics of %s/%s in %s", dataset_name, split, cache_dir)
    barrier()
    return ReferenceSet(stats if stats_missing else cached.stats, key, False, features)


@dataclass
class ReferenceFeatures:
    """A split's features in a second feature space, their key, and whether they came from the cache."""

    features: Tensor
    key: FeaturesKey
    hit: bool


def reference_features(
    dataset: Dataset,
    dataset_name: str,
    split: str,
    extractor: torch.nn.Module,
    cache_dir: str | Path | None,
    *,
    num_images: int | None = None,
    batch_size: int = 100,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    progress: bool = False,
) -> ReferenceFeatures:
    """The features of the first ``num_images`` (all by default) of a split in ``extractor``'s feature
    space (VGG-16's, for precision/recall), from the cache beside the statistics or computed and cached
    there (``cache_dir=None``: not cached). Every rank must call this."""
    key = features_key(dataset, dataset_name, split, extractor, num_images=num_images)
    path = None if cache_dir is None else Path(cache_dir) / key.filename()
    cached = None if path is None else load_cached(path, FEATURES, key)
    if not any_rank(cached is None, device):
        log.info("Reference %s features of %s/%s from %s", key.feature_space, dataset_name, split, path)
        return ReferenceFeatures(cached, key, True)
    features = compute_features(
        dataset,
        extractor,
        key,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        progress=progress,
    )
    if path is not None and rank_and_world()[0] == 0:
        save_cached(path, FEATURES, key, features)
        log.info("Cached reference %s features of %s/%s in %s", key.feature_space, dataset_name, split, path)
    barrier()
    return ReferenceFeatures(features, key, False)


__all__ = [
    "FEATURES",
    "STATISTICS",
    "CacheKind",
    "FeaturesKey",
    "ReferenceFeatures",
    "ReferenceKey",
    "ReferenceSet",
    "compute_features",
    "compute_statistics",
    "features_key",
    "load_cached",
    "reference_features",
    "reference_key",
    "reference_statistics",
    "save_cached",
]
