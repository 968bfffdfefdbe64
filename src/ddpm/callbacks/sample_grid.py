"""Save a grid of EMA samples every N steps and log it to every attached logger."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from ddpm.callbacks.periodic import PeriodicEMACallback
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.sampling import AncestralSampler, iter_samples
from ddpm.utils.images import image_grid, save_image_grid

SamplerFactory = Callable[[GaussianDiffusion], object]


class SampleGridCallback(PeriodicEMACallback):
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
        super().__init__(every_n_steps, at_end=True)
        self.output_dir = Path(output_dir)
        self.num_samples = num_samples
        self.seed = seed
        self.sampler_factory = sampler or AncestralSampler
        self.show_progress = show_progress
        self.last_path: Path | None = None

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool) -> Path | None:
        if trainer.global_rank != 0:
            return None
        if trainer.datamodule is None or getattr(trainer.datamodule, "image_shape", None) is None:
            raise RuntimeError("SampleGridCallback needs a datamodule with an image_shape")
        seeds = range(self.seed, self.seed + self.num_samples)
        batches = iter_samples(
            pl_module.ema_net,
            self.sampler_factory(pl_module.diffusion),
            tuple(trainer.datamodule.image_shape),
            seeds,
            batch_size=self.num_samples,
            device=pl_module.device,
            progress=self.show_progress,
        )
        samples = next(batches)[1]
        step = trainer.global_step
        self.last_path = save_image_grid(samples, self.output_dir / f"step_{step:07d}.png")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="samples", images=[str(self.last_path)], step=step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", image_grid(samples), step)
        return self.last_path

    def make_grid(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        """Sample and save a grid now."""
        return self._trigger(trainer, pl_module, final=False)
