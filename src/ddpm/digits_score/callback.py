"""The quickstart's measured quality: the digits score of EMA samples, printed at the end of training.

The digits score (:mod:`ddpm.digits_score.score`) classifies samples with a small CNN of the real digits:
an Inception-Score analogue (1..10), the classifier's confidence and class balance, and a Fréchet distance
on its features against the training digits. The same numbers for as many held-out digits (up to the 180
of the validation split) are printed beside them, so a newcomer sees how far the model is from the data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

from ddpm.callbacks.periodic import PeriodicEMACallback
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.io.atomic import atomic_write_json
from ddpm.metrics.names import metric_name
from ddpm.sampling import DPMSolverPPSampler, iter_samples

SamplerFactory = Callable[[GaussianDiffusion], object]


class DigitsScoreCallback(PeriodicEMACallback):
    """At the end of training (and every ``every_n_steps``, 0: never) draw ``num_samples`` EMA samples
    (seeds ``seed + i``) and log/print their digits score; rank 0 only. Needs the grayscale digits at any
    ``data.image_size`` (samples are compared with the real digits at 16x16 after the data's own resize).

    Args:
        num_samples: images scored (>= 2; the Fréchet distance of N images is biased upwards at small N,
            so compare scores at the same N: the held-out baseline has min(N, 180) images).
        sampler: a factory ``sampler(diffusion)``; DPM-Solver++(2M) with 20 steps by default.
        seed: first per-sample seed.
        batch_size: images per network call.
        output_path: a JSON file with the scores of the samples and of the real digits (optional).
        every_n_steps: also score every N optimizer steps (0: only at the end).
    """

    def __init__(
        self,
        num_samples: int = 256,
        sampler: SamplerFactory | None = None,
        seed: int = 0,
        batch_size: int = 256,
        output_path: str | Path | None = None,
        every_n_steps: int = 0,
    ) -> None:
        super().__init__(every_n_steps, at_end=True)
        if int(num_samples) < 2:
            raise ConfigError(f"the digits score needs num_samples >= 2, got {num_samples}")
        self.num_samples, self.seed, self.batch_size = int(num_samples), int(seed), int(batch_size)
        self.sampler_factory = sampler or (lambda diffusion: DPMSolverPPSampler(diffusion, steps=20))
        self.output_path = Path(output_path) if output_path else None
        self.result: dict | None = None
        self.image_shape: tuple[int, ...] = (1, 16, 16)  # the data's, read in setup

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        shape = tuple(getattr(trainer.datamodule, "image_shape", None) or ())
        if len(shape) != 3 or shape[0] != 1 or shape[1] != shape[2]:
            raise ConfigError(
                f"the digits score needs square grayscale digits, got images of shape {shape}: use "
                "data=digits, or drop callbacks.digits_score"
            )
        self.image_shape = shape

    def samples(self, pl_module: L.LightningModule) -> torch.Tensor:
        """``num_samples`` EMA samples at the data's shape (seeds ``seed + i``)."""
        seeds = range(self.seed, self.seed + self.num_samples)
        sampler = self.sampler_factory(pl_module.diffusion)
        batches = iter_samples(
            pl_module.ema_net,
            sampler,
            self.image_shape,
            seeds,
            batch_size=self.batch_size,
            device=pl_module.device,
        )
        return torch.cat([images for _, images in batches])

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool) -> dict | None:
        from ddpm.digits_score.score import digits_score, held_out_digits

        if trainer.global_rank != 0:
            return None
        model = digits_score(self.samples(pl_module)).as_dict()
        real = digits_score(held_out_digits(self.num_samples)).as_dict()
        self.result = {"step": trainer.global_step, "samples": model, "held_out_digits": real}
        n = self.num_samples
        keys = ("score", "frechet", "confidence")
        metrics = {f"eval/{metric_name(f'digits_{key}', n)}": float(model[key]) for key in keys}
        self.log_metrics(trainer, pl_module, metrics, final)
        if self.output_path is not None:
            atomic_write_json(self.output_path, self.result)
        if final:
            m = real["num_images"]
            print(
                f"Digits score of {n} EMA samples (1 to 10, higher is better): {model['score']:.2f} "
                f"({m} held-out real digits: {real['score']:.2f}); Fréchet distance to the training digits: "
                f"{model['frechet']:.1f} (held-out digits: {real['frechet']:.1f}; lower is better)"
            )
        return self.result


__all__ = ["DigitsScoreCallback"]
