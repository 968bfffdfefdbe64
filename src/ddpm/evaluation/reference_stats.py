"""Inception statistics of a dataset split, computed once and cached on disk.

The cache file name and its stored key cover everything the statistics depend on: the dataset, the
split, the image shape, the number of images, the SHA-256 of the Inception weights, the IS protocol
and a fingerprint of the pixels of a few images (so a different data directory with the same name
and size is not mistaken for the real one). A file whose key differs, that cannot be read, or whose
checksum does not match its contents is rebuilt, never trusted. Writes go through the project's one
atomic writer, so an interrupted write leaves no half-written cache.

Under DDP every rank takes part: if any rank misses the cache, all ranks compute their share of the
images and the sums are all-reduced; rank 0 writes the file.

The pool-3 features themselves (float32 [n, 2048], for KID and precision/recall) are cached on request
in a second file beside the statistics, ``<statistics name>-features.pt``, under the same key, from
the same Inception pass. A statistics file written without features stays valid: only the features
are computed and written then (the cached statistics are kept as they are).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from ddpm.evaluation.distributed import any_rank, barrier, gather_rows, rank_and_world
from ddpm.evaluation.metrics import (
    DEFAULT_IS_SPLITS,
    TORCH_FIDELITY_SHUFFLE_SEED,
    InceptionStatistics,
    statistics_for,
)
from ddpm.io.atomic import atomic_save_torch
from ddpm.utils.images import to_uint8
from ddpm.utils.progress import progress_bar

log = logging.getLogger(__name__)

CACHE_FORMAT = "ddpm-reference-stats-v1"
FEATURES_FORMAT = "ddpm-reference-features-v1"
SPLITS = ("train", "test")


@dataclass(frozen=True)
class ReferenceKey:
    """Everything reference statistics depend on; a change in any field is a cache miss."""

    dataset: str
    split: str
    image_shape: tuple[int, int, int]
    num_images: int
    inception_sha256: str
    data_fingerprint: str
    is_splits: tuple[int, ...] = DEFAULT_IS_SPLITS
    shuffle_seed: int | None = TORCH_FIDELITY_SHUFFLE_SEED

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["image_shape"] = list(self.image_shape)
        out["is_splits"] = list(self.is_splits)
        return out

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def filename(self) -> str:
        c, h, w = self.image_shape
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.dataset)
        return f"{name}-{self.split}-{c}x{h}x{w}-n{self.num_images}-{self.digest()[:16]}.pt"

    def features_filename(self) -> str:
        return self.filename().removesuffix(".pt") + "-features.pt"


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


def _first(item: Any) -> Tensor:
    """A dataset item's image (items may be ``image`` or ``(image, label, ...)``)."""
    return item[0] if isinstance(item, list | tuple) else item


def _as_batch_uint8(images: Tensor) -> Tensor:
    return images if images.dtype == torch.uint8 else to_uint8(images)


def data_fingerprint(dataset: Dataset, num_images: int, probes: int = 8) -> str:
    """BLAKE2 of the dataset length and the pixels of ``probes`` evenly spaced images."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(len(dataset)).encode())  # type: ignore[arg-type]
    count = min(probes, num_images)
    for k in range(count):
        index = (k * (num_images - 1)) // max(count - 1, 1)
        image = _as_batch_uint8(_first(dataset[index])[None])
        digest.update(image.cpu().numpy().tobytes())
    return digest.hexdigest()


def _checksum(tensors: Sequence[Tensor]) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_reference_stats(path: str | Path, key: ReferenceKey, stats: InceptionStatistics) -> Path:
    """Write the statistics and their key atomically."""
    state = stats.state_dict()
    payload = {
        "format": CACHE_FORMAT,
        "key": key.as_dict(),
        "stats": state,
        "checksum": _checksum(state["tensors"]),
    }
    return atomic_save_torch(path, payload)


def load_reference_stats(path: str | Path, key: ReferenceKey) -> InceptionStatistics | None:
    """The cached statistics if the file exists, is intact and has exactly this key; else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != CACHE_FORMAT or payload.get("key") != key.as_dict():
            log.warning("Reference statistics %s belong to another key: recomputing them", path)
            return None
        state = payload["stats"]
        if _checksum(state["tensors"]) != payload["checksum"]:
            raise ValueError("checksum mismatch")
        stats = InceptionStatistics.from_state_dict(state)
        if not all(bool(torch.isfinite(t).all()) for t in state["tensors"]):
            raise ValueError("non-finite values")
        stats.check_complete()
        if stats.num != key.num_images:
            raise ValueError(f"{stats.num} images instead of {key.num_images}")
        return stats
    except Exception as exc:  # truncated, garbage, tampered, wrong layout
        log.warning(
            "Reference statistics %s are corrupt (%s: %s): recomputing them", path, type(exc).__name__, exc
        )
        return None


def save_reference_features(path: str | Path, key: ReferenceKey, features: Tensor) -> Path:
    """Write a split's float32 features and their key atomically."""
    features = features.detach().cpu().to(torch.float32).contiguous()
    payload = {
        "format": FEATURES_FORMAT,
        "key": key.as_dict(),
        "features": features,
        "checksum": _checksum([features]),
    }
    return atomic_save_torch(path, payload)


def load_reference_features(path: str | Path, key: ReferenceKey) -> Tensor | None:
    """The cached features if the file exists, is intact and has exactly this key; else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != FEATURES_FORMAT or payload.get("key") != key.as_dict():
            log.warning("Reference features %s belong to another key: recomputing them", path)
            return None
        features = payload["features"]
        if _checksum([features]) != payload["checksum"]:
            raise ValueError("checksum mismatch")
        if features.dtype != torch.float32 or features.ndim != 2 or features.shape[0] != key.num_images:
            raise ValueError(f"features of shape {tuple(features.shape)} for {key.num_images} images")
        if not bool(torch.isfinite(features).all()):
            raise ValueError("non-finite values")
        return features
    except Exception as exc:  # truncated, garbage, tampered, wrong layout
        log.warning(
            "Reference features %s are corrupt (%s: %s): recomputing them", path, type(exc).__name__, exc
        )
        return None


@torch.no_grad()
def compute_statistics(
    dataset: Dataset,
    extractor: torch.nn.Module,
    num_images: int,
    batch_size: int = 100,
    device: torch.device | str = "cpu",
    is_splits: Sequence[int] = DEFAULT_IS_SPLITS,
    shuffle_seed: int | None = TORCH_FIDELITY_SHUFFLE_SEED,
    num_workers: int = 0,
    progress: bool = False,
    description: str = "reference statistics",
    keep_features: bool = False,
) -> tuple[InceptionStatistics, Tensor | None]:
    """Inception statistics of images ``0..num_images-1`` of ``dataset``, sharded over the ranks, and
    (``keep_features``) their float32 features [num_images, dim] on every rank, from the same pass."""
    rank, world = rank_and_world()
    indices = list(range(rank, num_images, world))
    loader = DataLoader(
        Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    stats = statistics_for(extractor, num_images, is_splits, shuffle_seed, device)
    start, kept = 0, []
    batches = progress_bar(loader, enabled=progress and rank == 0, description=description, total=len(loader))
    for batch in batches:
        images = _first(batch)
        index = torch.tensor(indices[start : start + images.shape[0]], dtype=torch.long)
        start += images.shape[0]
        features, logits = extractor(images.to(device))
        stats.update(features, logits, index)
        if keep_features:
            kept.append(features.detach().to(torch.float32))
    features = None
    if keep_features:
        mine = torch.cat(kept) if kept else torch.zeros(0, stats.features.total.shape[0], device=device)
        features = gather_rows(mine, torch.tensor(indices, dtype=torch.long), num_images).cpu()
    return stats.reduced(), features


def reference_key(
    dataset: Dataset,
    dataset_name: str,
    split: str,
    extractor: torch.nn.Module,
    *,
    num_images: int | None,
    protocol: tuple[Sequence[int], int | None] = (DEFAULT_IS_SPLITS, TORCH_FIDELITY_SHUFFLE_SEED),
) -> ReferenceKey:
    """The cache key of the first ``num_images`` (all: None) of a split; ``protocol``: (IS splits, seed)."""
    total = len(dataset)  # type: ignore[arg-type]
    num_images = total if num_images is None else int(num_images)
    if not 2 <= num_images <= total:
        raise ValueError(
            f"{dataset_name}/{split} has {total} images; cannot use {num_images} as the reference"
        )
    return ReferenceKey(
        dataset=dataset_name,
        split=split,
        image_shape=tuple(int(s) for s in _first(dataset[0]).shape),  # type: ignore[arg-type]
        num_images=num_images,
        inception_sha256=str(extractor.weights_sha256),
        data_fingerprint=data_fingerprint(dataset, num_images),
        is_splits=tuple(int(s) for s in protocol[0]),
        shuffle_seed=protocol[1],
    )


def _cached(key: ReferenceKey, cache_dir: str | Path | None, with_features: bool) -> ReferenceSet:
    """What the cache holds for ``key``: statistics and features (None where missing or invalid)."""
    if cache_dir is None:
        return ReferenceSet(None, key, False)  # type: ignore[arg-type]
    stats = load_reference_stats(Path(cache_dir) / key.filename(), key)
    features = (
        load_reference_features(Path(cache_dir) / key.features_filename(), key) if with_features else None
    )
    return ReferenceSet(stats, key, False, features)  # type: ignore[arg-type]


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

    ``extractor`` must have a ``weights_sha256`` attribute (see :class:`InceptionFeatureExtractor`).
    With ``cache_dir=None`` nothing is cached. Every rank must call this.
    """
    protocol = (is_splits, shuffle_seed)
    key = reference_key(dataset, dataset_name, split, extractor, num_images=num_images, protocol=protocol)
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
        key.num_images,
        batch_size=batch_size,
        device=device,
        is_splits=is_splits,
        shuffle_seed=shuffle_seed,
        num_workers=num_workers,
        progress=progress,
        description=f"{dataset_name}/{split} {'features' if with_features else 'statistics'}",
        keep_features=with_features,
    )
    if cache_dir is not None and rank_and_world()[0] == 0:
        if stats_missing:
            save_reference_stats(Path(cache_dir) / key.filename(), key, stats)
        if features is not None:
            save_reference_features(Path(cache_dir) / key.features_filename(), key, features)
        log.info("Cached reference statistics of %s/%s in %s", dataset_name, split, cache_dir)
    barrier()
    return ReferenceSet(stats if stats_missing else cached.stats, key, False, features)


def describe_datamodule(datamodule: Any) -> str:
    """A readable dataset name for cache keys: the class name plus its identifying settings."""
    name = type(datamodule).__name__.removesuffix("DataModule").lower()
    for attr in ("category", "image_size"):
        value = getattr(datamodule, attr, None)
        if value is not None:
            name += f"-{value}"
    return name


def split_dataset(datamodule: Any, split: str) -> Dataset:
    """The un-augmented dataset of a split: ``train`` -> ``train_set``; ``test`` -> ``val_set``
    (CIFAR-10's official 10k test set; the held-out split for the other datasets)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    attr = "train_set" if split == "train" else "val_set"
    if getattr(datamodule, attr, None) is None:
        if rank_and_world()[0] == 0 and hasattr(datamodule, "prepare_data"):
            datamodule.prepare_data()  # downloads (once, on rank 0)
        barrier()
        datamodule.setup("fit")
    dataset = getattr(datamodule, attr, None)
    if dataset is None:
        raise RuntimeError(f"{type(datamodule).__name__} has no {attr} after setup()")
    return dataset
