"""A callback for the SLURM tests: every rank appends one JSON line per optimizer step (step, loss, wall
time, SLURM restart count and node, the environment Lightning detected) to ``<output_dir>/rank<r>.jsonl``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import lightning as L


class StepLog(L.Callback):
    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        record = {
            "step": trainer.global_step,
            "loss": float(loss.item()),
            "time": time.time(),
            "restart": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
            "node_id": os.environ.get("SLURM_NODEID"),
            "node": os.environ.get("SLURMD_NODENAME"),
            "world_size": trainer.world_size,
            "environment": type(trainer._accelerator_connector.cluster_environment).__name__,
            "pid": os.getpid(),
        }
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / f"rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")


def read_steps(output_dir: Path, rank: int = 0) -> list[dict]:
    path = Path(output_dir) / f"rank{rank}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
