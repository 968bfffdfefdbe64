"""The one resumable shard store: items ``0..N-1`` cut into shards of consecutive indices, one NPZ each.

Shard ``s`` holds items ``ranges[s]`` and belongs to rank ``s % world_size``. Each file stores its
arrays, the item ``indices`` and the ``fingerprint`` of everything its contents depend on (weights,
settings, seed, ...). It is written atomically; a rerun keeps every shard that reads back complete
with the same fingerprint and recomputes the rest, so an interrupted job resumes where it stopped
and ends with the same results. Used for generated samples and for NLL sums.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from ddpm.io.atomic import atomic_write

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
_RESERVED = ("indices", "fingerprint")


class ShardStore:
    """``{prefix}_XXXXX.npz`` shards of ``shard_size`` consecutive item indices in ``folder``.

    ``check(shard, arrays)`` (optional) raises ``ValueError`` when a shard's arrays are not what the
    caller expects (dtype, shape, counts); such a shard is recomputed like a missing one.
    """

    def __init__(
        self,
        folder: str | Path,
        fingerprint: str,
        num_items: int,
        shard_size: int,
        *,
        prefix: str = "shard",
        check: Callable[[range, Arrays], None] | None = None,
    ) -> None:
        if num_items < 1 or shard_size < 1:
            raise ValueError(f"need num_items >= 1 and shard_size >= 1, got {num_items}, {shard_size}")
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.num_items = int(num_items)
        self.shard_size = int(shard_size)
        self.prefix = prefix
        self.check = check
        self.ranges = [range(s, min(s + shard_size, num_items)) for s in range(0, num_items, shard_size)]

    @property
    def num_shards(self) -> int:
        return len(self.ranges)

    def path(self, shard: int) -> Path:
        return self.folder / f"{self.prefix}_{shard:05d}.npz"

    def shards_of_rank(self, rank: int, world: int) -> list[int]:
        return list(range(rank, self.num_shards, world))

    def has(self, shard: int) -> bool:
        """True when the shard is complete, with our fingerprint."""
        return self.read(shard) is not None

    def missing(self, shards: Iterable[int]) -> list[int]:
        """The shards among ``shards`` that are absent, stale or invalid."""
        return [s for s in shards if self.read(s) is None]

    def _load(self, shard: int) -> Arrays:
        with np.load(self.path(shard), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        if str(arrays.pop("fingerprint")) != self.fingerprint:
            raise LookupError("made with other settings or weights")
        expected = np.arange(self.ranges[shard].start, self.ranges[shard].stop)
        if not np.array_equal(arrays.pop("indices"), expected):
            raise ValueError("its indices are not the shard's")
        if self.check is not None:
            self.check(self.ranges[shard], arrays)
        return arrays

    def read(self, shard: int) -> Arrays | None:
        """The arrays of a complete shard with our fingerprint; None if it must be (re)computed."""
        if not self.path(shard).is_file():
            return None
        try:
            return self._load(shard)
        except LookupError as exc:
            log.warning("%s was %s: recomputing it", self.path(shard), exc)
        except Exception as exc:  # truncated zip, bad CRC, missing array, failed check
            log.warning(
                "%s is unreadable (%s: %s): recomputing it", self.path(shard), type(exc).__name__, exc
            )
        return None

    def write(self, shard: int, arrays: Arrays) -> Path:
        """Write a shard's arrays (each with one row per item, or any shape ``check`` accepts) atomically."""
        if any(name in arrays for name in _RESERVED):
            raise ValueError(f"array names {_RESERVED} are reserved")
        items = self.ranges[shard]
        if self.check is not None:
            self.check(items, arrays)
        payload = {
            **arrays,
            "indices": np.arange(items.start, items.stop, dtype=np.int64),
            "fingerprint": np.array(self.fingerprint),
        }
        return atomic_write(self.path(shard), lambda f: np.savez(f, **payload))

    def iter_shards(self, shards: Iterable[int]) -> Iterator[tuple[int, Arrays]]:
        """``(shard, arrays)`` of finished shards; a missing one is an error (call after computing)."""
        for shard in shards:
            arrays = self.read(shard)
            if arrays is None:
                raise RuntimeError(f"shard {self.path(shard)} is missing or invalid after computing it")
            yield shard, arrays


__all__ = ["Arrays", "ShardStore"]
