"""What the run guards cost: a Lightning training step with and without the divergence guard, the
preemption handler and the whole-run progress bar (the ``callbacks=default`` additions of the
cluster issue).

Both variants train the same U-Net on the same in-memory batches in one process, in interleaved
rounds; prints one JSON object with seconds per step (median over rounds) and the ratio:

    python benchmarks/run_guards.py --model unet_cifar10 --batch 8 --steps 6 --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader
from train_step import build_unet, make_loader  # a sibling script

from ddpm.callbacks import DivergenceGuard, PreemptionCheckpoint, RunProgressBar
from ddpm.diffusion import GaussianDiffusion
from ddpm.lightning import DDPMLitModule


class StepTimer(L.Callback):
    """Wall time of the steps after ``warmup`` steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.steps = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.end = time.perf_counter()
        self.steps = trainer.global_step - self.warmup


def seconds_per_step(net: torch.nn.Module, loader: DataLoader, warmup: int, guards: bool) -> float:
    module = DDPMLitModule(copy.deepcopy(net), GaussianDiffusion(), warmup_steps=5000)
    timer = StepTimer(warmup)
    extra = [DivergenceGuard(), PreemptionCheckpoint(), RunProgressBar(refresh_rate=10)] if guards else []
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=len(loader),
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=guards,
        enable_model_summary=False,
        callbacks=[timer, *extra],
        limit_val_batches=0,
        log_every_n_steps=50,
    )
    trainer.fit(module, train_dataloaders=loader)
    return (timer.end - timer.start) / timer.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="unet_cifar10", help="a config name in configs/model")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    net = build_unet(args.model)
    loader = make_loader(net, args.batch, args.steps + args.warmup)
    times: dict[str, list[float]] = {"without": [], "with_guards": []}
    for _ in range(args.rounds):
        times["without"].append(seconds_per_step(net, loader, args.warmup, guards=False))
        times["with_guards"].append(seconds_per_step(net, loader, args.warmup, guards=True))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        json.dumps(
            {
                "model": args.model,
                "batch": args.batch,
                "threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "seconds_per_step": median,
                "all_rounds": times,
                "ratio_with_guards_over_without": median["with_guards"] / median["without"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
