"""Hardware-independent sample generation, sharded over ranks, stored as resumable uint8 NPZ shards.

Sample ``i`` is drawn with its own noise generator seeded from ``seed + i``
(:class:`~ddpm.sampling.PerSampleNoise`), so it depends only on the weights, the sampler settings
and ``seed + i``: not on the batch size, nor on the number of ranks, nor on which rank makes it
(on one device type: CPU and CUDA generators differ, so the device type is part of the fingerprint).

Samples ``0..N-1`` are kept in the project's resumable :class:`~ddpm.io.shards.ShardStore` as
``samples_XXXXX.npz`` (``images``: uint8 [n, H, W, C]; ``indices``; ``fingerprint``). A rerun skips
every shard that is complete and has the same fingerprint (weights, sampler, seed, N, shard size,
device type: :mod:`ddpm.utils.fingerprint`), so an interrupted evaluation resumes where it stopped and
produces the same samples.
Images come from the one sampling loop, :func:`ddpm.sampling.iter_samples`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ddpm.diffusion.denoiser import Cond
from ddpm.errors import ConfigError
from ddpm.io.shards import Arrays, ShardStore
from ddpm.sampling import iter_samples
from ddpm.utils.distributed import rank_and_world
from ddpm.utils.images import to_uint8

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationSettings:
    """How many samples, from which seeds, in which batches and shards (``ddpm-eval``'s ``generation``)."""

    num_samples: int = 50000
    batch_size: int = 256
    shard_size: int = 1000
    grid_size: int = 64
    seed: int = 0


def balanced_labels(num_images: int, num_classes: int) -> Tensor:
    """Class-balanced labels ``i % num_classes`` (int64 [N]): the class-conditional evaluation protocol
    (``ddpm-eval``'s ``labels=balanced`` and the in-loop FID of a class-conditional model)."""
    if num_classes < 1:
        raise ConfigError(f"balanced labels need a class-conditional model (num_classes >= 1): {num_classes}")
    return torch.arange(int(num_images), dtype=torch.long) % int(num_classes)


def generate(
    model: nn.Module,
    sampler: Any,
    image_shape: Sequence[int],
    indices: Sequence[int],
    *,
    seed: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    cond: Cond | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """``(indices, uint8 images [b, C, H, W] on the CPU)`` for the given global sample indices.

    Sample ``i`` uses seed ``seed + i``; ``cond`` (optional) is aligned with ``indices``.
    """
    seeds = [seed + int(i) for i in indices]
    batches = iter_samples(
        model, sampler, tuple(image_shape), seeds, batch_size=batch_size, device=device, cond=cond
    )
    for batch_seeds, images in batches:
        yield torch.tensor([s - seed for s in batch_seeds], dtype=torch.long), to_uint8(images)


def _check_images(items: range, arrays: Arrays) -> None:
    images = arrays.get("images")
    if images is None or images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != len(items):
        raise ValueError(f"a shard of {len(items)} samples needs uint8 images [n, H, W, C]")


def sample_store(folder: str | Path, fingerprint: str, settings: GenerationSettings) -> ShardStore:
    """The resumable store of ``settings.num_samples`` generated images in ``folder``."""
    return ShardStore(
        folder, fingerprint, settings.num_samples, settings.shard_size, prefix="samples", check=_check_images
    )


def generate_shards(
    model: nn.Module,
    sampler: Any,
    store: ShardStore,
    *,
    image_shape: Sequence[int],
    settings: GenerationSettings,
    device: torch.device | str = "cpu",
    progress: bool = True,
    cond: Cond | None = None,
) -> list[int]:
    """Generate this rank's missing shards; returns the shard ids of this rank (done or resumed).

    ``cond`` (optional) holds one row per sample ``0..N-1`` (e.g. class labels).
    """
    rank, world = rank_and_world()
    mine = store.shards_of_rank(rank, world)
    todo = store.missing(mine)
    if len(todo) < len(mine):
        log.info(
            "Rank %d: resuming, %d of its %d shards are already complete",
            rank,
            len(mine) - len(todo),
            len(mine),
        )
    indices = [i for shard in todo for i in store.ranges[shard]]
    seeds = [settings.seed + i for i in indices]
    batches = iter_samples(
        model,
        sampler,
        tuple(image_shape),
        seeds,
        batch_size=settings.batch_size,
        device=device,
        progress=progress and rank == 0,
        cond={key: value[indices] for key, value in (cond or {}).items()},
    )
    queue, buffer = deque(todo), torch.empty(0, dtype=torch.uint8)
    for _, images in batches:
        buffer = torch.cat([buffer, to_uint8(images)]) if buffer.numel() else to_uint8(images)
        while queue and buffer.shape[0] >= len(store.ranges[queue[0]]):
            size = len(store.ranges[queue[0]])
            store.write(queue.popleft(), {"images": buffer[:size].permute(0, 2, 3, 1).contiguous().numpy()})
            buffer = buffer[size:]
    return mine


def read_images(store: ShardStore, shards: Iterable[int]) -> Iterator[tuple[Tensor, Tensor]]:
    """``(indices, uint8 images [n, C, H, W])`` of finished shards, in order."""
    for shard, arrays in store.iter_shards(shards):
        items = store.ranges[shard]
        indices = torch.arange(items.start, items.stop, dtype=torch.long)
        yield indices, torch.from_numpy(arrays["images"]).permute(0, 3, 1, 2)
