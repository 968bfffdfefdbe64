"""A callback used by the DDP test: each rank writes what it trained on and its final weights."""

from pathlib import Path

import lightning as L
import torch


class DumpRankState(L.Callback):
    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)
        self.batch_sums: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch_sums.append(float(batch.double().sum()))

    def on_train_end(self, trainer, pl_module) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "world_size": trainer.world_size,
                "batch_sums": self.batch_sums,
                "net": {k: v.cpu() for k, v in pl_module.net.state_dict().items()},
                "ema": {k: v.cpu() for k, v in pl_module.ema.state_dict().items()},
            },
            self.output_dir / f"rank{trainer.global_rank}.pt",
        )
