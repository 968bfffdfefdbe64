"""Samplers: each takes any callable ``model(x_t, t) -> output`` and a GaussianDiffusion.

Entry point: :func:`ddpm.sampling.sample` (or :func:`make_sampler` for a sampler object). Classes:
:class:`AncestralSampler` (DDPM, full or respaced chain), :class:`DDIMSampler` (eta in [0, 1]),
:class:`DPMSolverPPSampler` (2M / 3M). Hydra: the ``sampler`` config group. Inpainting by
replacement conditioning: :func:`inpaint_replacement`.
"""

from ddpm.sampling.ancestral import AncestralSampler
from ddpm.sampling.api import SAMPLERS, make_sampler, sample
from ddpm.sampling.base import Sampler, Trajectory
from ddpm.sampling.ddim import DDIMSampler
from ddpm.sampling.dpm_solver import DPMSolverPPSampler
from ddpm.sampling.inpaint import center_mask, inpaint_replacement
from ddpm.sampling.noise import NoiseSource, PerSampleNoise
from ddpm.sampling.respace import SpacedDiffusion
from ddpm.sampling.spacing import SPACINGS, make_timesteps

__all__ = [
    "SAMPLERS",
    "SPACINGS",
    "AncestralSampler",
    "DDIMSampler",
    "DPMSolverPPSampler",
    "NoiseSource",
    "PerSampleNoise",
    "Sampler",
    "SpacedDiffusion",
    "Trajectory",
    "center_mask",
    "inpaint_replacement",
    "make_sampler",
    "make_timesteps",
    "sample",
]
