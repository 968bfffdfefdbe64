"""A class-conditional model's EMA samples, one row per class, at one or more guidance scales.

With ``score_digits`` (the embedded digits) each grid's samples are also classified by the digits
classifier (:mod:`ddpm.digits_score`), and the share classified as the digit they were asked
for is logged as ``eval/class_accuracy_w{scale}`` and printed at the end of training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from ddpm.callbacks.periodic import PeriodicEMACallback
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.metrics.names import metric_name, scale_name
from ddpm.sampling import AncestralSampler, iter_samples
from ddpm.sampling.guidance import LABELS_KEY, with_guidance
from ddpm.utils.images import save_image_grid

log = logging.getLogger(__name__)

SamplerFactory = Callable[[GaussianDiffusion], object]


class ClassGridCallback(PeriodicEMACallback):
    """Every ``every_n_steps`` optimizer steps (0: only at the end) sample ``per_class`` images of every
    class (row k: class k; seeds ``seed + i``, the same every time) with each guidance scale and save
    ``<output_dir>/step_XXXXXXX_<scale>.png``. Only global rank 0 samples.

    Args:
        output_dir: where the grids go.
        num_classes: the model's classes (rows).
        per_class: images per row.
        every_n_steps: period in optimizer steps (0: at the end only).
        seed: per-sample seeds ``seed, seed + 1, ...``.
        sampler: a factory ``sampler(diffusion)`` (Hydra ``_partial_``); ancestral sampling by default.
        guidance_scales: classifier-free guidance scales (``null``: no guidance, i.e. plain conditional).
        score_digits: classify the samples with the digits classifier and report the accuracy.
        show_progress: show a progress bar while sampling.
    """

    def __init__(
        self,
        output_dir: str | Path,
        num_classes: int,
        per_class: int = 10,
        every_n_steps: int = 0,
        seed: int = 0,
        sampler: SamplerFactory | None = None,
        guidance_scales: Sequence[float | None] = (None,),
        score_digits: bool = False,
        show_progress: bool = False,
    ) -> None:
        super().__init__(every_n_steps, at_end=True)
        self.output_dir = Path(output_dir)
        self.num_classes, self.per_class, self.seed = int(num_classes), int(per_class), int(seed)
        self.sampler_factory = sampler or AncestralSampler
        self.guidance_scales = list(guidance_scales)
        self.score_digits = bool(score_digits)
        self.show_progress = show_progress
        self.accuracy: dict[str, float] = {}

    def labels(self) -> Tensor:
        """Row-major labels: ``per_class`` images of class 0, then of class 1, ..."""
        return torch.arange(self.num_classes).repeat_interleave(self.per_class)

    def sample(self, pl_module: L.LightningModule, shape: Sequence[int], scale: float | None) -> Tensor:
        """The grid's images (CPU, model space) at guidance ``scale``."""
        labels = self.labels()
        sampler = with_guidance(self.sampler_factory(pl_module.diffusion), scale)
        batches = iter_samples(
            pl_module.ema_net,
            sampler,
            tuple(shape),
            range(self.seed, self.seed + labels.numel()),
            batch_size=labels.numel(),
            device=pl_module.device,
            cond={LABELS_KEY: labels},
            progress=self.show_progress,
        )
        return next(batches)[1]

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool) -> dict[str, float] | None:
        from ddpm.digits_score.score import class_accuracy

        if trainer.global_rank != 0:
            return None
        shape = trainer.datamodule.image_shape
        metrics = {}
        for scale in self.guidance_scales:
            images = self.sample(pl_module, shape, scale)
            name = f"step_{trainer.global_step:07d}_{scale_name(scale)}.png"
            save_image_grid(images, self.output_dir / name, nrow=self.per_class)
            if self.score_digits:
                name = f"eval/{metric_name('class_accuracy', detail=scale_name(scale))}"
                metrics[name] = class_accuracy(images, self.labels())
        self.accuracy = {key.rsplit("_", 1)[-1]: value for key, value in metrics.items()}
        if metrics:
            self.log_metrics(trainer, pl_module, metrics, final)
        if final and self.accuracy:
            n = self.labels().numel()
            parts = ", ".join(f"guidance {key}: {100 * acc:.1f}%" for key, acc in self.accuracy.items())
            print(f"Samples classified as the requested digit ({n} per scale, digits classifier): {parts}")
        return metrics


__all__ = ["ClassGridCallback"]
