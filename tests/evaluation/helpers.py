"""A data module and checkpoints for the evaluation tests (no downloads); the stand-in feature network and
images: :mod:`tests.metrics.helpers`; the small U-Net: :func:`tests.helpers.tiny_unet`."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from tests.metrics.helpers import RandomImages


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
