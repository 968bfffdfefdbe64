"""In-training NLL (the full variational bound, bits/dim) of the EMA model on held-out images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from ddpm.callbacks.periodic import PeriodicEMACallback
from ddpm.evaluation.datasets import split_dataset
from ddpm.evaluation.nll import NLLSettings, dataset_nll
from ddpm.io.atomic import atomic_write_json
from ddpm.metrics.names import metric_name


class NLLCallback(PeriodicEMACallback):
    """Every ``every_n_steps`` optimizer steps, the full bound (all T terms) on ``num_images`` images.

    Logs ``{prefix}nll_bpd_{n}_{split}`` and its prior / decoder terms; every rank evaluates its share
    of the images and the float64 sums are all-reduced (DDP-safe). With ``output_dir`` the per-timestep
    terms and the rate-distortion curve are written to ``nll_step_XXXXXXX.json`` (rank 0).

    Args:
        every_n_steps: period in optimizer steps (0: only at the end with ``at_end``).
        num_images: images of the split (None: all; T network calls per image, so keep it small in-loop).
        batch_size: batch size per rank.
        split: ``test`` (the DataModule's held-out set; CIFAR-10's test set) or ``train``.
        seed: seed of the per-image noise (the same at every evaluation).
        clip_denoised: clip x_0 predictions as the sampler does (the official default).
        output_dir: where to write the per-timestep terms (None: not written).
        at_end: also evaluate at the end of training.
        prefix: prefix of the logged names.
        show_progress: a progress bar (rank 0's share of the images, with its ETA) while evaluating.
    """

    def __init__(
        self,
        every_n_steps: int = 10000,
        num_images: int | None = 1000,
        batch_size: int = 64,
        split: str = "test",
        seed: int = 0,
        clip_denoised: bool = True,
        output_dir: str | Path | None = None,
        at_end: bool = False,
        prefix: str = "eval/",
        show_progress: bool = True,
    ) -> None:
        super().__init__(every_n_steps, at_end)
        self.show_progress = show_progress
        self.settings = NLLSettings(
            split=split,
            num_images=num_images,
            batch_size=int(batch_size),
            clip_denoised=clip_denoised,
            seed=int(seed),
        )
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.prefix = prefix
        self.last_summary: dict[str, Any] | None = None

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool) -> dict[str, float]:
        if trainer.datamodule is None:
            raise RuntimeError("NLLCallback needs the Trainer's datamodule")
        dataset = split_dataset(trainer.datamodule, self.settings.split)
        stats = dataset_nll(
            pl_module.ema_net,
            pl_module.diffusion,
            dataset,
            self.settings,
            pl_module.device,
            progress=self.show_progress,
        )
        summary = stats.summary()
        self.last_summary = summary
        num, split = summary["num_images"], self.settings.split
        metrics = {
            f"{self.prefix}{metric_name(f'nll_{key}', num, split)}": summary[key]
            for key in ("bpd", "prior_bpd", "decoder_bpd")
        }
        self.log_metrics(trainer, pl_module, metrics, final)
        if self.output_dir is not None and trainer.global_rank == 0:
            path = self.output_dir / f"nll_step_{trainer.global_step:07d}.json"
            atomic_write_json(path, {"step": trainer.global_step, **summary})
        return metrics

    def evaluate(
        self, trainer: L.Trainer, pl_module: L.LightningModule, log: bool = True
    ) -> dict[str, float]:
        """Compute (and log) the bound now; every rank must call this."""
        return self._trigger(trainer, pl_module, final=not log)
