"""Store the composed run config in every checkpoint, so a checkpoint alone rebuilds its model."""

from __future__ import annotations

from typing import Any

import lightning as L


class RunConfigCallback(L.Callback):
    """Writes ``config`` (the resolved Hydra config of the run) as ``checkpoint["ddpm_config"]``.

    :func:`ddpm.lightning.restore.load_module` re-instantiates the module from its ``module`` entry;
    ``ddpm-eval`` also takes the dataset from its ``data`` entry. The config is plain containers only,
    so the checkpoint still loads with ``weights_only=True``.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["ddpm_config"] = self.config


__all__ = ["RunConfigCallback"]
