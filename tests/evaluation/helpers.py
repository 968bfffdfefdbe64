"""Small models, stand-in feature extractors and datasets for the evaluation tests (no downloads)."""

from __future__ import annotations

import hashlib

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ddpm.evaluation.inception import as_uint8_rgb
from ddpm.models import UNet


def tiny_unet(channels: int = 3, resolution: int = 8, seed: int = 0, scale: float = 0.05) -> UNet:
    """A small U-Net with random (non-zero) weights everywhere, so that its output depends on its input."""
    torch.manual_seed(seed)
    net = UNet(
        in_channels=channels,
        out_channels=channels,
        ch=32,
        ch_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(resolution // 2,),
        dropout=0.0,
        resolution=resolution,
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=generator) * scale)
    return net.eval()


class StubExtractor(nn.Module):
    """A cheap stand-in for the Inception: fixed random projections of 4x4-pooled pixels.

    Same interface as :class:`~ddpm.evaluation.inception.InceptionFeatureExtractor`: images in,
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


class FakeDataModule(L.LightningDataModule):
    """The parts of a DiffusionDataModule the evaluation uses (``train_set`` / ``val_set``, ``image_shape``)
    and a plain training loader (Lightning shards it under DDP)."""

    def __init__(self, n_train: int = 12, n_test: int = 8, shape=(3, 8, 8), seed: int = 0) -> None:
        super().__init__()
        self.train_set = RandomImages(n_train, shape, seed)
        self.val_set = RandomImages(n_test, shape, seed + 1, offset=0.2)
        self.image_shape = tuple(shape)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=4, shuffle=False)


def write_lightning_checkpoint(path, output_dir, overrides=()):
    """A ``ddpm-train``-style checkpoint (state_dict + ddpm_config) of a tiny digits model, without training.

    The EMA weights are made different from the raw ones so tests can tell which were loaded.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from tests.helpers import TINY, compose_train

    cfg = compose_train([*TINY, "diffusion.num_timesteps=10", *overrides], output_dir)
    module = instantiate(cfg.module)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
        module.ema.update_parameters(module.net)  # first update copies
        for p in module.ema_net.parameters():
            p.mul_(0.9)
    checkpoint = {
        "state_dict": module.state_dict(),
        "ddpm_config": OmegaConf.to_container(cfg, resolve=True),
        "pytorch-lightning_version": "2.6.6",
        "global_step": 0,
    }
    torch.save(checkpoint, path)
    return module, cfg
