"""Lightning's ModelCheckpoint that also keeps the final step of a run that ends between two saves."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class ModelCheckpointAtEnd(ModelCheckpoint):
    """:class:`~lightning.pytorch.callbacks.ModelCheckpoint` (same arguments) that also saves the step that
    reaches ``max_steps`` when no periodic save falls on it: the step checkpoint (rotated with the others by
    ``save_top_k``) and ``last.ckpt``.

    Lightning (2.6) writes ``last.ckpt`` at the end of ``fit`` only if it never wrote one, so a run whose
    ``max_steps`` is not a multiple of ``every_n_train_steps`` ended with its final weights in no file. The
    save happens at the end of the final batch, where the periodic saves happen, so a longer relaunch
    continues from it exactly (a save from ``on_train_end`` would hold a later loop state, which does not
    resume exactly mid-epoch). Runs stopped earlier (preemption, divergence) are the business of the
    callbacks that stop them.
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        final = 0 < trainer.max_steps <= trainer.global_step
        # the same two saves as ModelCheckpoint.on_train_batch_end (private helpers of Lightning 2.x)
        if final and not self._should_skip_saving_checkpoint(trainer):
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)


__all__ = ["ModelCheckpointAtEnd"]
