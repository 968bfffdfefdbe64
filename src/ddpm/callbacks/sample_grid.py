"""Save a grid of EMA samples every N steps and log it to every attached logger."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.sampling import AncestralSampler, PerSampleNoise
from ddpm.utils.images import image_grid, save_image_grid

SamplerFactory = Callable[[GaussianDiffusion], object]


class SampleGridCallback(L.Callback):
    """Every ``every_n_steps`` optimizer steps (and at the end of training) sample the EMA model.

    The same ``seed`` is used every time, so successive grids show the same images improving.
    Only global rank 0 samples (the EMA network is not wrapped by DDP, so this needs no collective).

    Args:
        output_dir: where ``step_XXXXXXX.png`` files are written.
        every_n_steps: period in optimizer steps (0 disables periodic grids; the final grid is kept).
        num_samples: images per grid.
        seed: per-sample seeds are ``seed, seed + 1, ...``.
        sampler: a factory ``sampler(diffusion)`` (Hydra ``_partial_``); ancestral sampling by default.
        show_progress: show a progress bar while sampling.
    """

    def __init__(
        self,
        output_dir: str | Path,
        every_n_steps: int = 5000,
        num_samples: int = 64,
        seed: int = 0,
        sampler: SamplerFactory | None = None,
        show_progress: bool = False,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.seed = seed
        self.sampler_factory = sampler or AncestralSampler
        self.show_progress = show_progress
        self.last_path: Path | None = None
        self._last_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.make_grid(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._last_step:
            self.make_grid(trainer, pl_module)

    @torch.no_grad()
    def make_grid(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        step = trainer.global_step
        self._last_step = step
        if trainer.global_rank != 0:
            return None
        net = pl_module.ema_net
        was_training = net.training
        net.eval()
        sampler = self.sampler_factory(pl_module.diffusion)
        shape = trainer.datamodule.image_shape if trainer.datamodule is not None else None
        if shape is None:
            raise RuntimeError("SampleGridCallback needs a datamodule with an image_shape")
        noise = PerSampleNoise(range(self.seed, self.seed + self.num_samples), pl_module.device)
        samples = sampler.sample(net, shape, noise, pl_module.device, progress=self.show_progress)
        net.train(was_training)
        path = save_image_grid(samples, self.output_dir / f"step_{step:07d}.png")
        self.last_path = path
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="samples", images=[str(path)], step=step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", image_grid(samples), step)
        return path
