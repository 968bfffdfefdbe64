"""One training progress bar over the whole run: optimizer steps / max_steps, steps/s, ETA, metrics."""

from __future__ import annotations

import math
import sys
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from ddpm.utils.progress import is_terminal


class RunProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, counting optimizer steps of the whole run instead of batches per epoch.

    Lightning's default bar restarts at every epoch and shows ``Epoch 9/-2`` for step-based runs; this one
    runs from the resumed step to ``max_steps`` with the rate and ETA of the run (resumed runs measure
    their rate from where they started). The logged metrics are read only when the bar refreshes (every
    ``refresh_rate`` steps): reading them copies them to the host, which waits for the device.
    The bar is created with its total (no ``Training: 0/?`` first), and when stdout is not a terminal
    (a pipe, a log file, CI) the validation bar, which would nest below it with cursor-up escapes written
    as text, is not shown.
    """

    def __init__(self, refresh_rate: int = 10, process_position: int = 0) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position)

    @staticmethod
    def total_steps(trainer: L.Trainer) -> float:
        """``max_steps``, or Lightning's estimate of the run's optimizer steps when only epochs bound it."""
        if trainer.max_steps and trainer.max_steps > 0:
            return float(trainer.max_steps)
        estimate = trainer.estimated_stepping_batches
        return float(estimate) if math.isfinite(estimate) else math.inf

    def init_train_tqdm(self) -> Tqdm:
        """The run's bar, from the resumed step to ``max_steps``."""
        total = self.total_steps(self.trainer)
        return Tqdm(
            desc="train",
            total=None if math.isinf(total) else int(total),
            initial=self.trainer.global_step,
            unit="step",
            position=2 * self.process_position,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            bar_format=self.BAR_FORMAT,
        )

    def init_validation_tqdm(self) -> Tqdm:
        """Lightning's validation bar on a terminal (or alone, in ``trainer.validate``); else a silent one."""
        if self.trainer.state.fn == "validate" or is_terminal(sys.stdout):
            return super().init_validation_tqdm()
        return Tqdm(disable=True)

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        """One bar for the whole run: nothing to reset between epochs."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar = self.train_progress_bar
        step = trainer.global_step
        if bar is None or not self.is_enabled or bar.n == step:
            return  # disabled, or a micro-batch inside a gradient-accumulation window
        total = bar.total or 0
        if step % self.refresh_rate == 0 or step >= total:
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Metrics are shown at the refreshes; nothing to close between epochs."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """Lightning's bar metrics plus the latest training loss (logged without ``prog_bar``, which
        would copy it to the host every step), read here only when the bar refreshes."""
        metrics = super().get_metrics(trainer, pl_module)
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            metrics["loss"] = f"{float(loss):.4g}"
        return metrics


__all__ = ["RunProgressBar"]
