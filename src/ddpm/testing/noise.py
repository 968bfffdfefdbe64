"""Batch-wide noise for Monte-Carlo tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ddpm.sampling.noise import NoiseSource


class BatchNoise(NoiseSource):
    """A single generator (or the global RNG when ``generator`` is None) for the whole batch.

    Image i then depends on the batch it is drawn in (unlike :class:`~ddpm.sampling.PerSampleNoise`),
    which is fine for moment estimates over thousands of samples, where one generator is much cheaper.
    """

    def __init__(self, batch_size: int, generator: torch.Generator | None = None) -> None:
        self.batch_size = batch_size
        self.generator = generator

    def randn(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
        return torch.randn((self.batch_size, *shape), generator=self.generator, device=device, dtype=dtype)


__all__ = ["BatchNoise"]
