"""Plot the training loss curve (raw and smoothed) to a PNG at the end of training."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from ddpm.io.atomic import atomic_write


class LossCurveCallback(L.Callback):
    """Collects the per-step training loss (without a device sync per step) and plots it.

    The losses are kept as detached device tensors and moved to the CPU in chunks of
    ``sync_every`` steps, so the training loop is never stalled by ``.item()``.
    """

    def __init__(self, output_path: str | Path, sync_every: int = 200, smoothing: int = 50) -> None:
        self.output_path = Path(output_path)
        self.sync_every = sync_every
        self.smoothing = smoothing
        self.steps: list[int] = []
        self.losses: list[float] = []
        self._pending: list[torch.Tensor] = []
        self._pending_steps: list[int] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, *args) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        self._pending.append(loss.detach())
        self._pending_steps.append(trainer.global_step)
        if len(self._pending) >= self.sync_every:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self.losses.extend(torch.stack(self._pending).float().cpu().tolist())
            self.steps.extend(self._pending_steps)
            self._pending.clear()
            self._pending_steps.clear()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush()
        if trainer.global_rank == 0 and self.losses:
            self.plot()

    def plot(self) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(self.steps, self.losses, lw=0.5, alpha=0.4, label="loss")
        k = min(self.smoothing, len(self.losses))
        if k > 1:
            kernel = torch.ones(k) / k
            smooth = torch.nn.functional.conv1d(
                torch.tensor(self.losses).view(1, 1, -1), kernel.view(1, 1, -1)
            ).view(-1)
            ax.plot(self.steps[k - 1 :], smooth.tolist(), lw=1.5, label=f"mean of {k}")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("L_simple")
        ax.set_yscale("log")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        atomic_write(self.output_path, lambda f: fig.savefig(f, format="png", dpi=120))
        plt.close(fig)
        return self.output_path
