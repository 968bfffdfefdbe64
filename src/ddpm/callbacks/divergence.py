"""The divergence guard: a run whose loss or gradient norm stops being finite ends at once, before any
checkpoint with non-finite weights is written, so its last good checkpoint is never rotated away."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from ddpm.errors import DivergenceError
from ddpm.lightning.resume import newest_checkpoint


def non_finite_tensors(state_dict: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` holding a NaN or an infinity."""
    return [
        name
        for name, value in state_dict.items()
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


class DivergenceGuard(L.Callback):
    """Stops training with :class:`~ddpm.errors.DivergenceError` (one line: which quantity, which step, the
    last good checkpoint; exit code 2) when the training loss or the global gradient norm is not finite.

    The per-step flags stay on the device and are read every ``check_every_n_steps`` optimizer steps (one
    host sync per check, agreed over the DDP ranks) and before every checkpoint is written; a checkpoint
    whose weights are not all finite is refused, so ModelCheckpoint's ``save_top_k`` can never replace a
    good checkpoint by a bad one.

    The gradient norm is the one the module computed for clipping (``pl_module.last_grad_norm``, as
    :class:`~ddpm.lightning.DDPMLitModule` keeps it); a module without it has its loss watched only.
    Lightning's ``EarlyStopping(check_finite=True)`` only looks at a monitored metric when it validates
    (thousands of steps later, after checkpoints of NaN weights were saved) and ``SpikeDetection`` syncs
    every step and guards no checkpoint, hence this callback. Under ``16-mixed`` precision non-finite
    gradients are the GradScaler's business (it skips those steps), so only the loss is watched there.
    """

    def __init__(self, check_every_n_steps: int = 5) -> None:
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be >= 1, got {check_every_n_steps}")
        self.check_every_n_steps = int(check_every_n_steps)
        self._flags: list[tuple[int, str, Tensor]] = []  # (step, quantity, "is not finite" on the device)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, Tensor):
            self._flags.append((trainer.global_step, "train/loss", ~torch.isfinite(loss.detach())))
        norm = getattr(pl_module, "last_grad_norm", None)  # the module's own clipping norm: not recomputed
        if isinstance(norm, Tensor) and not str(trainer.precision).startswith("16"):
            self._flags.append((trainer.global_step, "gradient norm", ~torch.isfinite(norm)))
        if trainer.global_step % self.check_every_n_steps == 0:
            self.check(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.check(trainer)
        bad = non_finite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            self._stop(trainer, f"the weights {bad[0]} are not finite at step {trainer.global_step}")

    def check(self, trainer: L.Trainer) -> None:
        """Raise if any flag since the last check is set (on any rank); every rank must call this."""
        flags, self._flags = self._flags, []
        local = bool(torch.stack([flag for _, _, flag in flags]).any()) if flags else False
        if not trainer.strategy.reduce_boolean_decision(local, all=False):
            return
        bad = [(step, what) for step, what, flag in flags if bool(flag)]
        if not bad:
            self._stop(trainer, "another rank diverged")
        first = min(step for step, _ in bad)
        names = sorted({what for step, what in bad if step == first}, reverse=True)
        self._stop(
            trainer, f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} not finite at step {first}"
        )

    @staticmethod
    def _stop(trainer: L.Trainer, where: str) -> None:
        found = newest_checkpoint(trainer.default_root_dir) if trainer.default_root_dir else None
        last = (
            f"the last good checkpoint is {found[0]} (step {found[1].get('global_step')})"
            if found
            else "no checkpoint was written before"
        )
        raise DivergenceError(
            f"training diverged: {where}; no checkpoint of it was written; {last}: lower "
            "module.optimizer.lr or clip gradients (trainer.gradient_clip_val=1.0)"
        )


__all__ = ["DivergenceGuard", "non_finite_tensors"]
