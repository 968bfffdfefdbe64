"""Images/s of one DDPM training step (forward, backward, grad clip, Adam, EMA) for three loops.

  (a) ``lightning``: our DDPMLitModule driven by a Lightning Trainer (hooks, logging, clipping);
  (b) ``plain``:     the same U-Net, loss, optimizer and EMA in a hand-written PyTorch loop;
  (c) ``diffusers``: diffusers' UNet2DModel with the same architecture in the plain loop.

All three read the same in-memory batches and are timed after warm-up steps, in one process, in
interleaved rounds so that machine noise hits them alike. Prints one JSON object with per-loop
images/s (median over rounds) and the ratios:

    python benchmarks/train_step.py --model unet_cifar10 --batch 8 --steps 5 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import hydra
import lightning as L
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, TensorDataset

from ddpm.diffusion import GaussianDiffusion, SimpleLoss
from ddpm.lightning import DDPMLitModule
from ddpm.utils.config import config_dir


def build_unet(model: str) -> nn.Module:
    cfg = OmegaConf.load(config_dir() / "model" / f"{model}.yaml")
    return hydra.utils.instantiate(cfg)


def make_loader(net: nn.Module, batch: int, n_batches: int) -> DataLoader:
    shape = (net.in_channels, net.resolution, net.resolution)
    data = torch.rand(batch * n_batches, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return DataLoader(
        TensorDataset(data),
        batch_size=batch,
        shuffle=False,
        drop_last=True,
        collate_fn=lambda items: torch.stack([x for (x,) in items]),
    )


def plain_loop(net: nn.Module, loader: DataLoader, warmup: int) -> float:
    """Seconds per step of a hand-written loop (after ``warmup`` steps)."""
    diffusion, loss_fn = GaussianDiffusion(), SimpleLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-4, eps=1e-8)
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9999), use_buffers=True)
    ema.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    net.train()
    start = None
    for i, x0 in enumerate(loader):
        if i == warmup:
            start = time.perf_counter()
        loss = loss_fn(net, diffusion, x0, gen).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        ema.update_parameters(net)
    return (time.perf_counter() - start) / (len(loader) - warmup)


class _StepTimer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.steps = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()
        self.steps = batch_idx + 1 - self.warmup


def lightning_loop(net: nn.Module, loader: DataLoader, warmup: int) -> float:
    """Seconds per step of our LightningModule under a Trainer with the paper's settings."""
    module = DDPMLitModule(net, GaussianDiffusion(), warmup_steps=5000, ema_decay=0.9999)
    timer = _StepTimer(warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=len(loader),
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        num_sanity_val_steps=0,
        limit_val_batches=0,
        log_every_n_steps=50,
    )
    trainer.fit(module, train_dataloaders=loader)
    return (timer.end - timer.start) / timer.steps


class DiffusersEps(nn.Module):
    """Adapts UNet2DModel to the ``model(x_t, t) -> eps`` call."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t).sample


def build_diffusers(net: nn.Module) -> nn.Module | None:
    try:
        from diffusers import UNet2DModel

        from ddpm.weights.diffusers_unet import diffusers_config_of
    except ImportError:
        return None
    config = diffusers_config_of(net)
    return DiffusersEps(UNet2DModel(**config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="unet_cifar10", help="a config name in configs/model")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per loop and round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ours = build_unet(args.model)
    theirs = build_diffusers(ours)
    loops: dict[str, Callable[[], float]] = {
        "plain": lambda: plain_loop(
            ours, make_loader(ours, args.batch, args.warmup + args.steps), args.warmup
        ),
        "lightning": lambda: lightning_loop(
            ours, make_loader(ours, args.batch, args.warmup + args.steps), args.warmup
        ),
    }
    if theirs is not None:
        loops["diffusers"] = lambda: plain_loop(
            theirs, make_loader(ours, args.batch, args.warmup + args.steps), args.warmup
        )
    seconds: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, run in loops.items():
            seconds[name].append(run())
    median = {name: statistics.median(values) for name, values in seconds.items()}
    result = {
        "benchmark": "train_step",
        "model": args.model,
        "params": sum(p.numel() for p in ours.parameters()),
        "batch": args.batch,
        "threads": args.threads,
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "seconds_per_step": {k: round(v, 4) for k, v in median.items()},
        "images_per_s": {k: round(args.batch / v, 3) for k, v in median.items()},
        "lightning_overhead_vs_plain": round(median["lightning"] / median["plain"] - 1, 4),
    }
    if "diffusers" in median:
        result["ours_speedup_vs_diffusers"] = round(median["diffusers"] / median["plain"], 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
