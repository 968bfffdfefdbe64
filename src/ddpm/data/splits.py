"""Deterministic train/validation splits that do not depend on any library's RNG stream."""

from __future__ import annotations

import numpy as np

from ddpm.errors import ConfigError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on a uint64 array (wrapping arithmetic): a stable integer hash."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def num_val_items(n: int, val_fraction: float) -> int:
    """``round(n * val_fraction)``, at least 1 and leaving at least one training item."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if n < 2:
        raise ConfigError(f"cannot split {n} item(s) into a training and a validation set: add more data")
    return min(max(1, round(n * val_fraction)), n - 1)


def split_indices(n: int, n_val: int, split_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into sorted (train, val) index arrays with ``n_val`` validation items.

    The validation items are the ``n_val`` indices with the smallest splitmix64 hash of
    ``(index, split_seed)``: a uniform random subset that is the same on every machine, every
    NumPy/PyTorch version and every rank. ``split_seed`` is independent of the training seed, so
    changing the training seed keeps the validation set.
    """
    if not 0 <= n_val <= n:
        raise ValueError(f"n_val={n_val} out of range for {n} items")
    with np.errstate(over="ignore"):
        seed = _splitmix64(np.array([split_seed], dtype=np.uint64))[0]
        keys = _splitmix64(np.arange(n, dtype=np.uint64) ^ seed)
    order = np.argsort(keys, kind="stable")
    val = np.sort(order[:n_val])
    train = np.sort(order[n_val:])
    return train, val
