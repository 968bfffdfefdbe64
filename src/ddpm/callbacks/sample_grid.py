"""Save grids of EMA samples every N steps and log them to every attached logger; for a class-conditional
model, one row per class at each guidance scale, and (on the digits) how often a sample shows its class.

With ``score_digits`` (the embedded digits) each class grid's samples are classified by the digits
classifier (:mod:`ddpm.digits_score`), and the share classified as the digit they were asked for is
logged as ``eval/class_accuracy_w{scale}`` and printed at the end of training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor

from ddpm.callbacks.periodic import PeriodicEMACallback
from ddpm.diffusion.denoiser import LABELS_KEY
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.metrics.names import metric_name, scale_name
from ddpm.sampling import AncestralSampler, iter_samples
from ddpm.sampling.guidance import with_guidance
from ddpm.utils.images import grid_image, save_png

SamplerFactory = Callable[[GaussianDiffusion], object]


class SampleGridCallback(PeriodicEMACallback):
    """Every ``every_n_steps`` optimizer steps (and at the end of training) sample the EMA model.

    Unconditional (``num_classes=0``): ``num_samples`` images in ``step_XXXXXXX.png``. Class-conditional
    (``num_classes > 0``): ``per_class`` images of every class (row k: class k, labelled at its left) with
    each guidance scale, in ``step_XXXXXXX_<scale>.png`` (``w0``, ``w3``; ``none``: no guidance). Every
    logger gets the picture of the PNG (enlarged small images, row labels). The same seeds are used every
    time, so successive grids show the same images improving. Only global rank 0 samples (the EMA network
    is not wrapped by DDP, so this needs no collective).

    Args:
        output_dir: where the grids are written.
        every_n_steps: period in optimizer steps (0 disables periodic grids; the final grid is kept).
        num_samples: images per unconditional grid.
        seed: per-sample seeds are ``seed, seed + 1, ...``.
        sampler: a factory ``sampler(diffusion)`` (Hydra ``_partial_``); ancestral sampling by default.
        show_progress: show a progress bar while sampling.
        num_classes: the model's classes, one row each (0: an unconditional grid).
        per_class: images per row of a class grid.
        guidance_scales: classifier-free guidance scales of the class grids (``null``: no guidance,
            i.e. plain conditional sampling).
        score_digits: classify the class grids with the digits classifier and report the accuracy.
    """

    def __init__(
        self,
        output_dir: str | Path,
        every_n_steps: int = 5000,
        num_samples: int = 64,
        seed: int = 0,
        sampler: SamplerFactory | None = None,
        show_progress: bool = False,
        num_classes: int = 0,
        per_class: int = 10,
        guidance_scales: Sequence[float | None] = (None,),
        score_digits: bool = False,
    ) -> None:
        super().__init__(every_n_steps, at_end=True)
        self.output_dir = Path(output_dir)
        self.num_samples = num_samples
        self.seed = seed
        self.sampler_factory = sampler or AncestralSampler
        self.show_progress = show_progress
        self.num_classes, self.per_class = int(num_classes), int(per_class)
        self.guidance_scales = list(guidance_scales)
        self.score_digits = bool(score_digits)
        if self.score_digits and self.num_classes < 1:
            raise ConfigError("score_digits scores class grids: set num_classes to the model's classes")
        self.last_path: Path | None = None
        self.last_metrics: dict[str, float] = {}
        self.accuracy: dict[str, float] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Refuse guided grids of a network whose null class is never trained (``class_dropout=0``)."""
        guided = [scale for scale in self.guidance_scales if scale]
        if guided and self.num_classes > 0 and getattr(pl_module.net, "class_dropout", None) == 0:
            raise ConfigError(
                f"the sample grid's guidance_scales {guided} use the null class, which model.class_dropout=0 "
                "never trains: set model.class_dropout=0.1, or guidance_scales=[null]"
            )

    def labels(self) -> Tensor | None:
        """Row-major labels of a class grid (``per_class`` images of class 0, then of class 1, ...);
        None for an unconditional grid."""
        if self.num_classes < 1:
            return None
        return torch.arange(self.num_classes).repeat_interleave(self.per_class)

    def sample(
        self, pl_module: L.LightningModule, shape: Sequence[int], scale: float | None = None
    ) -> Tensor:
        """The grid's images (CPU, model space), at guidance ``scale`` for a class grid."""
        labels = self.labels()
        num = self.num_samples if labels is None else labels.numel()
        batches = iter_samples(
            pl_module.ema_net,
            with_guidance(self.sampler_factory(pl_module.diffusion), scale),
            tuple(shape),
            range(self.seed, self.seed + num),
            batch_size=num,
            device=pl_module.device,
            cond=None if labels is None else {LABELS_KEY: labels},
            progress=self.show_progress,
        )
        return next(batches)[1]

    def save(
        self,
        trainer: L.Trainer,
        images: Tensor,
        suffix: str = "",
        nrow: int | None = None,
        row_labels: Sequence[str] | None = None,
    ) -> Path:
        """Write ``step_XXXXXXX{suffix}.png`` and log the same picture (enlarged, with the rows' labels)
        as ``samples{suffix}`` to W&B and TensorBoard."""
        step = trainer.global_step
        picture = grid_image(images, nrow, row_labels=row_labels)
        self.last_path = save_png(picture, self.output_dir / f"step_{step:07d}{suffix}.png")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=f"samples{suffix}", images=[str(self.last_path)], step=step)
            elif isinstance(logger, TensorBoardLogger):
                pixels = np.asarray(picture)
                logger.experiment.add_image(f"samples{suffix}", pixels, step, dataformats="HWC")
        return self.last_path

    def row_labels(self, datamodule: object) -> list[str]:
        """The label written left of each row of a class grid: the class name (the datamodule's
        ``class_names``) or its number."""
        names = getattr(datamodule, "class_names", None)
        if names is None or len(names) != self.num_classes:
            return [str(k) for k in range(self.num_classes)]
        return [f"{k} {name}" for k, name in enumerate(names)]

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool) -> Path | None:
        if trainer.global_rank != 0:
            return None
        if trainer.datamodule is None or getattr(trainer.datamodule, "image_shape", None) is None:
            raise RuntimeError("SampleGridCallback needs a datamodule with an image_shape")
        shape = trainer.datamodule.image_shape
        if self.num_classes < 1:
            return self.save(trainer, self.sample(pl_module, shape))
        self.accuracy = {}
        rows = self.row_labels(trainer.datamodule)
        for scale in self.guidance_scales:
            images = self.sample(pl_module, shape, scale)
            self.save(trainer, images, f"_{scale_name(scale)}", nrow=self.per_class, row_labels=rows)
            if self.score_digits:
                self.accuracy[scale_name(scale)] = self.class_accuracy(images)
        self.report_accuracy(trainer, pl_module, final)
        return self.last_path

    def class_accuracy(self, images: Tensor) -> float:
        """The share of a class grid's images that the digits classifier reads as their row's class."""
        from ddpm.digits_score.score import class_accuracy

        return class_accuracy(images, self.labels())

    def report_accuracy(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool) -> None:
        """Log ``eval/class_accuracy_<scale>`` of the grids just drawn, and print it at the end."""
        metrics = {
            f"eval/{metric_name('class_accuracy', detail=key)}": acc for key, acc in self.accuracy.items()
        }
        self.last_metrics = metrics
        if metrics:
            self.log_metrics(trainer, pl_module, metrics, final)
        if final and self.accuracy:
            n = self.num_classes * self.per_class
            parts = ", ".join(f"guidance {key}: {100 * acc:.1f}%" for key, acc in self.accuracy.items())
            print(f"Samples classified as the requested digit ({n} per scale, digits classifier): {parts}")

    def make_grid(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        """Sample and save the grid(s) now."""
        return self._trigger(trainer, pl_module, final=False)


__all__ = ["SampleGridCallback"]
