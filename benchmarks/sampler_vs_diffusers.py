"""Our samplers vs diffusers' scheduler loops driving the same network at the same batch.

For each pair (our :class:`AncestralSampler` vs ``DDPMScheduler``, our :class:`DDIMSampler` (eta 0) vs
``DDIMScheduler``), on the same U-Net, the same x_T and (for the ancestral chain) the same per-step
noise (ours is recorded and replayed into diffusers' ``randn_tensor``), prints one JSON object with:

* ``max_abs_diff``: the largest difference of the final images (float rounding: diffusers keeps the
  schedule in float32, we in float64);
* ``calls_per_s`` of each loop, timed separately in interleaved rounds, each drawing its own noise as
  it normally does, and ``ratio_ours_vs_diffusers`` (>= 1: ours is not slower).

    python benchmarks/sampler_vs_diffusers.py --model unet_tiny --batch 16 --ddim-steps 50 --rounds 2
    python benchmarks/sampler_vs_diffusers.py --num-timesteps 100      # a shorter ancestral chain

The schedules are the paper's: linear betas 1e-4..0.02, fixed-large variance, x_0 clipped to [-1, 1];
DDIM visits diffusers' "leading" timesteps 0, T/S, 2T/S, ... (ours takes them as ``timesteps=``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import hydra
import torch
from omegaconf import OmegaConf
from torch import nn

from ddpm.diffusion import GaussianDiffusion
from ddpm.sampling import AncestralSampler, DDIMSampler, PerSampleNoise
from ddpm.utils.config import config_dir


class RecordingNoise:
    """A NoiseSource that keeps every draw (x_T first, then one per step), to replay into diffusers."""

    def __init__(self, seeds: list[int]) -> None:
        self.inner = PerSampleNoise(seeds)
        self.batch_size = self.inner.batch_size
        self.draws: list[torch.Tensor] = []

    def randn(self, shape: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        z = self.inner.randn(shape, device, dtype)
        self.draws.append(z.clone())
        return z


def build_unet(model: str, seed: int = 0) -> nn.Module:
    """The configured U-Net with small random weights everywhere (the output conv is zero-initialised)."""
    torch.manual_seed(seed)
    net = hydra.utils.instantiate(OmegaConf.load(config_dir() / "model" / f"{model}.yaml"))
    with torch.no_grad():
        for param in net.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return net.eval()


def diffusers_scheduler(kind: str, num_timesteps: int) -> Any:
    import diffusers

    common = {"num_train_timesteps": num_timesteps, "beta_start": 1e-4, "beta_end": 0.02,
              "beta_schedule": "linear", "clip_sample": True, "prediction_type": "epsilon"}  # fmt: skip
    if kind == "ancestral":
        return diffusers.DDPMScheduler(variance_type="fixed_large", **common)
    return diffusers.DDIMScheduler(
        set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading", **common
    )


def diffusers_loop(scheduler: Any, net: Any, x_t: torch.Tensor, steps: int) -> torch.Tensor:
    """The standard diffusers denoising loop from x_T ~ N(0, I) (a DDPM x_t at the top timestep):
    ``x = x_T * init_noise_sigma``, then ``scheduler.step(net(scale_model_input(x, t), t), t, x)`` over
    its timesteps (the sigma-space schedulers, Euler and Heun, scale x by sqrt(1 + sigma^2); DDPM, DDIM
    and DPM-Solver leave it as is).

    DDIM recomputes eps from the clipped x_0 (``use_clipped_model_output``), as ours and the DDIM
    authors' code do; diffusers' default keeps the unclipped eps.
    """
    scheduler.set_timesteps(steps)
    params = inspect.signature(scheduler.step).parameters
    options: dict[str, Any] = {"use_clipped_model_output": True} if "eta" in params else {}
    if "generator" in params:
        options["generator"] = torch.Generator().manual_seed(0)
    x = x_t * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = net(scheduler.scale_model_input(x, t), t.expand(x.shape[0]))
            x = scheduler.step(eps, t, x, **options).prev_sample
    return x


def ours_sampler(kind: str, diffusion: GaussianDiffusion, ddim_steps: int) -> Any:
    if kind == "ancestral":
        return AncestralSampler(diffusion, clip_denoised=True)
    stride = diffusion.num_timesteps // ddim_steps
    return DDIMSampler(diffusion, eta=0.0, timesteps=list(range(0, diffusion.num_timesteps, stride)))


def replaying(draws: list[torch.Tensor]) -> Callable[..., torch.Tensor]:
    queue = iter(draws)

    def randn_tensor(
        shape: Any, generator: Any = None, device: Any = None, dtype: Any = None, layout: Any = None
    ):
        z = next(queue)
        if tuple(z.shape) != tuple(shape):
            raise RuntimeError(f"diffusers drew noise of shape {tuple(shape)}, ours {tuple(z.shape)}")
        return z.to(device=device, dtype=dtype)

    return randn_tensor


def parity(kind: str, net: nn.Module, args: argparse.Namespace) -> dict[str, Any]:
    """Final images of both loops from the same x_T and per-step noise: their largest difference."""
    from diffusers.schedulers import scheduling_ddpm

    diffusion = GaussianDiffusion(num_timesteps=args.num_timesteps, var_type="fixed_large")
    sampler = ours_sampler(kind, diffusion, args.ddim_steps)
    noise = RecordingNoise(list(range(args.batch)))
    ours = sampler.sample(net, shape_of(net), noise)
    original = scheduling_ddpm.randn_tensor
    scheduling_ddpm.randn_tensor = replaying(noise.draws[1:])
    try:
        theirs = diffusers_loop(
            diffusers_scheduler(kind, args.num_timesteps), net, noise.draws[0], sampler.num_steps
        )
    finally:
        scheduling_ddpm.randn_tensor = original
    return {"network_calls": sampler.num_steps, "max_abs_diff": float((ours - theirs).abs().max()),
            "output_std": float(ours.std())}  # fmt: skip


def shape_of(net: nn.Module) -> tuple[int, int, int]:
    return (net.in_channels, net.resolution, net.resolution)


def timing(kind: str, net: nn.Module, args: argparse.Namespace) -> dict[str, float]:
    """Network calls/s of each loop (median over interleaved rounds), each with its own noise."""
    diffusion = GaussianDiffusion(num_timesteps=args.num_timesteps, var_type="fixed_large")
    sampler = ours_sampler(kind, diffusion, args.ddim_steps)
    seconds: dict[str, list[float]] = {"ours": [], "diffusers": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        x_t = sampler.sample(net, shape_of(net), PerSampleNoise(list(range(args.batch))))
        seconds["ours"].append(time.perf_counter() - start)
        start = time.perf_counter()
        x_t = torch.randn(args.batch, *shape_of(net), generator=torch.Generator().manual_seed(1))
        diffusers_loop(diffusers_scheduler(kind, args.num_timesteps), net, x_t, sampler.num_steps)
        seconds["diffusers"].append(time.perf_counter() - start)
    calls = {name: sampler.num_steps / statistics.median(values) for name, values in seconds.items()}
    return {
        "calls_per_s_ours": round(calls["ours"], 3),
        "calls_per_s_diffusers": round(calls["diffusers"], 3),
        "ratio_ours_vs_diffusers": round(calls["ours"] / calls["diffusers"], 4),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="unet_tiny", help="a config name in configs/model")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--num-timesteps", type=int, default=1000, help="T of the chain (ancestral: T calls)")
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samplers", default="ancestral,ddim")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    net = build_unet(args.model)
    result: dict[str, Any] = {"benchmark": "sampler_vs_diffusers", "model": args.model, "batch": args.batch,
                              "num_timesteps": args.num_timesteps, "threads": args.threads}  # fmt: skip
    for kind in args.samplers.split(","):
        result[kind] = {**parity(kind, net, args), **(timing(kind, net, args) if args.rounds > 0 else {})}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
