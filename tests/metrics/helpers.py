"""Stand-ins for the metrics tests (no downloads): a cheap feature network and deterministic images."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ddpm.metrics.inception import as_uint8_rgb


class StubExtractor(nn.Module):
    """A cheap stand-in for the Inception: fixed random projections of 4x4-pooled pixels.

    Same interface as :class:`~ddpm.metrics.inception.InceptionFeatureExtractor`: images in,
    ``(features [B, dim], logits [B, classes])`` out, plus ``weights_sha256``.
    """

    def __init__(self, dim: int = 16, classes: int = 10, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.proj = nn.Parameter(torch.randn(3 * 16, dim, generator=generator), requires_grad=False)
        self.head = nn.Parameter(torch.randn(dim, classes, generator=generator), requires_grad=False)
        self.feature_dim, self.num_classes = dim, classes
        self.weights_sha256 = hashlib.sha256(f"stub-{dim}-{classes}-{seed}".encode()).hexdigest()
        self.official = False
        self.calls = 0

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        self.calls += 1
        x = as_uint8_rgb(images).float() / 255.0
        pooled = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        features = torch.tanh(pooled @ self.proj)
        return features, features @ self.head


class RandomImages(Dataset):
    """Deterministic float images in [-1, 1] (8-bit values), shape [C, H, W]."""

    def __init__(self, n: int, shape=(3, 8, 8), seed: int = 0, offset: float = 0.0) -> None:
        generator = torch.Generator().manual_seed(seed)
        pixels = torch.randint(0, 256, (n, *shape), generator=generator).float()
        self.images = (pixels / 127.5 - 1.0 + offset).clamp(-1, 1)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return self.images[index]
