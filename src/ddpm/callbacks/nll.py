"""In-training NLL (the full variational bound, bits/dim) of the EMA model on held-out images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from ddpm.evaluation.metrics import count_label
from ddpm.evaluation.nll import dataset_nll
from ddpm.evaluation.reference_stats import split_dataset
from ddpm.evaluation.report import write_json


class NLLCallback(L.Callback):
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
    ) -> None:
        self.every_n_steps = int(every_n_steps)
        self.num_images = num_images
        self.batch_size = int(batch_size)
        self.split = split
        self.seed = int(seed)
        self.clip_denoised = clip_denoised
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.at_end = at_end
        self.prefix = prefix
        self.last_summary: dict[str, Any] | None = None
        self._last_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_end and trainer.global_step != self._last_step:
            self.evaluate(trainer, pl_module, log=False)

    @torch.no_grad()
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, log: bool = True) -> dict[str, Any]:
        """Compute (and log) the bound; every rank must call this (it does, from the hooks)."""
        self._last_step = trainer.global_step
        if trainer.datamodule is None:
            raise RuntimeError("NLLCallback needs the Trainer's datamodule")
        dataset = split_dataset(trainer.datamodule, self.split)
        num = len(dataset) if self.num_images is None else min(int(self.num_images), len(dataset))
        net = pl_module.ema_net
        was_training = net.training
        net.eval()
        try:
            stats = dataset_nll(
                net,
                pl_module.diffusion,
                dataset,
                num,
                self.batch_size,
                self.seed,
                pl_module.device,
                self.clip_denoised,
            )
        finally:
            net.train(was_training)
        summary = stats.summary()
        self.last_summary = summary
        name = f"{count_label(num)}_{self.split}"
        metrics = {
            f"{self.prefix}nll_bpd_{name}": summary["bpd"],
            f"{self.prefix}nll_prior_bpd_{name}": summary["prior_bpd"],
            f"{self.prefix}nll_decoder_bpd_{name}": summary["decoder_bpd"],
        }
        if log:
            pl_module.log_dict(metrics, on_step=True, on_epoch=False, sync_dist=False)
        elif trainer.global_rank == 0:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
        if self.output_dir is not None and trainer.global_rank == 0:
            write_json(
                self.output_dir / f"nll_step_{trainer.global_step:07d}.json",
                {"step": trainer.global_step, **summary},
            )
        return metrics
