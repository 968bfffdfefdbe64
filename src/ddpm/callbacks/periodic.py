"""The one trigger of in-training evaluations of the EMA weights: every N optimizer steps and at the end."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from ddpm.callbacks.preemption import PreemptionCheckpoint
from ddpm.sampling.loop import eval_mode


def preempted(trainer: L.Trainer) -> bool:
    """True when training stopped for a preemption checkpoint: the run is not at its end."""
    return any(isinstance(cb, PreemptionCheckpoint) and cb.checkpoint_path for cb in trainer.callbacks)


class PeriodicEMACallback(L.Callback):
    """Calls :meth:`run` every ``every_n_steps`` optimizer steps (0: never) and, with ``at_end``, once at
    the end of training (not when a preemption stopped it), never twice for the same step, with the EMA
    network in eval mode meanwhile.

    ``run(trainer, pl_module, final)`` does the work; ``final`` is True for the end-of-training call,
    whose metrics go straight to the loggers (``self.log`` is not allowed in ``on_train_end``).
    """

    def __init__(self, every_n_steps: int, at_end: bool) -> None:
        self.every_n_steps = int(every_n_steps)
        self.at_end = at_end
        self._last_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self._trigger(trainer, pl_module, final=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_end and trainer.global_step != self._last_step and not preempted(trainer):
            self._trigger(trainer, pl_module, final=True)

    @torch.no_grad()
    def _trigger(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool) -> Any:
        self._last_step = trainer.global_step
        with eval_mode(pl_module.ema_net):
            return self.run(trainer, pl_module, final)

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool) -> Any:
        raise NotImplementedError

    @staticmethod
    def log_metrics(
        trainer: L.Trainer, pl_module: L.LightningModule, metrics: dict[str, float], final: bool
    ) -> None:
        """Log values that are identical on every rank (computed from all-reduced sums: no sync needed)."""
        if not final:
            pl_module.log_dict(metrics, on_step=True, on_epoch=False, sync_dist=False)
        elif trainer.global_rank == 0:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)


__all__ = ["PeriodicEMACallback"]
