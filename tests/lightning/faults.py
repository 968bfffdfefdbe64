"""Callbacks that inject faults into a training run (tests load them as ``+callbacks.<name>._target_``)."""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning as L
import torch


class PoisonWeights(L.Callback):
    """Sets a weight of the network to NaN right before optimizer step ``at_step``: its loss is NaN."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step == self.at_step:
            with torch.no_grad():
                next(pl_module.net.parameters()).view(-1)[0] = float("nan")


class InfiniteGradients(L.Callback):
    """Makes the gradients of optimizer step ``at_step`` infinite while its loss stays finite."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == self.at_step:
            next(p for p in pl_module.net.parameters() if p.grad is not None).grad.fill_(float("inf"))


class SignalSelf(L.Callback):
    """Sends ``signum`` to this process during optimizer step ``at_step`` (as SLURM's pre-timeout signal)."""

    def __init__(self, at_step: int, signum: int = signal.SIGUSR1) -> None:
        self.at_step = at_step
        self.signum = signum

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)
