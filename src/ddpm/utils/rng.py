"""Counter-based randomness: every random draw is a function of (seed, step, rank, stream).

Training randomness (timesteps, noise, dropout, flips) and sampling randomness are derived
from explicit counters instead of the global RNG's history. That makes a resumed run repeat
an uninterrupted one exactly, and makes sample i depend only on (seed + i), whatever the batch
size or the number of ranks.
"""

from __future__ import annotations

import hashlib

import torch

_MASK63 = (1 << 63) - 1


def derive_seed(*parts: int | str) -> int:
    """Mix integers/strings into one 63-bit seed (stable across processes and platforms)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK63


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def step_generator(
    seed: int, step: int, rank: int, stream: str, device: torch.device | str = "cpu"
) -> torch.Generator:
    """Generator for one training step on one rank, for a named stream (e.g. "noise", "flip")."""
    return make_generator(derive_seed(seed, step, rank, stream), device)
