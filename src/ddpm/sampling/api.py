"""The one entry point for sampling from Python: :func:`sample` (and :func:`make_sampler`).

    from ddpm.sampling import sample
    images = sample(model, diffusion, shape=(3, 32, 32), num_samples=64, sampler="ddim", steps=50)
    images = sample(model, diffusion, (3, 32, 32), seeds=range(1000, 1064), sampler="dpm_solver_pp", steps=20)

Sampler names (settings are passed through as keyword arguments):

==================  ================================================================  ================
name                class and defaults                                                 NFE
==================  ================================================================  ================
``ancestral``       DDPM Algorithm 2 (``steps=None``: all T; ``steps=k``: respaced)    T or k
``ddim``            DDIM, ``eta=0.0``, ``spacing="uniform"``, ``steps=50``              steps
``dpm_solver_pp``   DPM-Solver++(2M), ``spacing="logsnr"``, ``steps=20``                steps
``dpm_solver_pp_3m``  DPM-Solver++(3M)                                                  steps
==================  ================================================================  ================

Image i of a call depends only on its seed (``seeds[i]``, or ``seed + i``), whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ddpm.diffusion.denoiser import Model
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling.ancestral import AncestralSampler
from ddpm.sampling.base import Sampler
from ddpm.sampling.ddim import DDIMSampler
from ddpm.sampling.dpm_solver import DPMSolverPPSampler
from ddpm.sampling.noise import PerSampleNoise

# name -> (class, default settings)
SAMPLERS: dict[str, tuple[type, dict[str, Any]]] = {
    "ancestral": (AncestralSampler, {}),
    "ddpm": (AncestralSampler, {}),
    "ddim": (DDIMSampler, {}),
    "dpm_solver_pp": (DPMSolverPPSampler, {"order": 2}),
    "dpm_solver_pp_2m": (DPMSolverPPSampler, {"order": 2}),
    "dpm_solver_pp_3m": (DPMSolverPPSampler, {"order": 3}),
}


def make_sampler(name: str, diffusion: GaussianDiffusion, **settings: Any) -> Sampler:
    """Build the sampler called ``name`` (see the table above) for ``diffusion``."""
    key = name.lower().replace("-", "_").replace("++", "_pp")
    if key not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
    cls, defaults = SAMPLERS[key]
    return cls(diffusion, **{**defaults, **settings})


@torch.no_grad()
def sample(
    model: Model,
    diffusion: GaussianDiffusion,
    shape: Sequence[int],
    num_samples: int | None = None,
    *,
    sampler: str | Sampler = "ddim",
    seeds: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    **settings: Any,
) -> Tensor:
    """Draw images [N, *shape] from ``model`` with the named (or a ready-made) sampler.

    Args:
        model: any callable ``model(x_t, t) -> output`` (e.g. ``module.ema_net`` in eval mode).
        diffusion: the GaussianDiffusion the model was trained with.
        shape: (C, H, W) of one image.
        num_samples: N; with ``seeds`` it defaults to ``len(seeds)``.
        sampler: ``ancestral`` | ``ddim`` | ``dpm_solver_pp`` | ``dpm_solver_pp_3m``, or a sampler object.
        seeds: per-image seeds (image i is a function of ``seeds[i]`` alone); default ``seed + i``.
        batch_size: images per network call (default: all at once).
        device: where to sample.
        progress: show a progress bar.
        **settings: sampler settings, e.g. ``steps=50, eta=0.0, spacing="quadratic", clip_denoised=True``.
    """
    if isinstance(sampler, str):
        sampler = make_sampler(sampler, diffusion, **settings)
    elif settings:
        raise ConfigError(
            "sampler settings were given together with a ready-made sampler: pass one or the other"
        )
    if seeds is None:
        if num_samples is None:
            raise ConfigError("give num_samples or seeds")
        seeds = range(seed, seed + num_samples)
    seeds = [int(s) for s in seeds]
    if num_samples is not None and num_samples != len(seeds):
        raise ConfigError(f"num_samples={num_samples} but {len(seeds)} seeds were given")
    batch_size = batch_size or len(seeds)
    device = torch.device(device)
    out = []
    for start in range(0, len(seeds), batch_size):
        noise = PerSampleNoise(seeds[start : start + batch_size], device)
        out.append(sampler.sample(model, tuple(shape), noise, device, progress=progress).cpu())
    return torch.cat(out) if out else torch.empty((0, *shape))


__all__ = ["SAMPLERS", "make_sampler", "sample"]
