"""Sources of Gaussian noise for samplers.

``PerSampleNoise`` gives every image its own generator seeded from ``seed + i``, so image i is
the same whatever the batch size or the number of ranks that produce it (on a given device type:
CPU and CUDA generators produce different streams).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ddpm.diffusion.likelihood import NoiseSource
from ddpm.utils.rng import derive_seed, make_generator


class PerSampleNoise(NoiseSource):
    """One generator per sample, seeded by the sample's global index (``seeds[i]``)."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> None:
        self.seeds = [int(s) for s in seeds]
        self.batch_size = len(self.seeds)
        self.generators = [make_generator(derive_seed("sample", s), device) for s in self.seeds]

    def randn(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
        return torch.stack(
            [torch.randn(tuple(shape), generator=g, device=device, dtype=dtype) for g in self.generators]
        )


__all__ = ["NoiseSource", "PerSampleNoise"]
