"""Samplers: each takes the model call ``model(x_t, t, **cond) -> output`` and a GaussianDiffusion.

Entry points: :func:`iter_samples` (the one sampling loop: batches of images from per-image seeds),
:func:`sample` (all images at once), :func:`make_sampler` (a sampler object by name, see
:func:`sampler_names`: the yamls of the Hydra ``sampler`` group). Classes: :class:`AncestralSampler`
(DDPM, full or respaced chain), :class:`DDIMSampler` (eta in [0, 1]), :class:`DPMSolverPPSampler`
(2M / 3M), :class:`HeunSampler` (EDM's Heun, deterministic or with churn). Inpainting by replacement
conditioning: :func:`inpaint_replacement`. Classifier-free guidance of any sampler:
:func:`with_guidance` / ``make_sampler(..., guidance_scale=w)`` (:mod:`ddpm.sampling.guidance`).
"""

from ddpm.sampling.ancestral import AncestralSampler
from ddpm.sampling.base import Sampler, Trajectory
from ddpm.sampling.ddim import DDIMSampler
from ddpm.sampling.dpm_solver import DPMSolverPPSampler
from ddpm.sampling.guidance import GuidedSampler, with_guidance
from ddpm.sampling.heun import HeunSampler
from ddpm.sampling.inpaint import center_mask, inpaint_replacement
from ddpm.sampling.loop import iter_samples, sample
from ddpm.sampling.noise import NoiseSource, PerSampleNoise
from ddpm.sampling.registry import make_sampler, sampler_names
from ddpm.sampling.respace import SpacedDiffusion
from ddpm.sampling.spacing import SPACINGS, make_timesteps

__all__ = [
    "SPACINGS",
    "AncestralSampler",
    "DDIMSampler",
    "DPMSolverPPSampler",
    "GuidedSampler",
    "HeunSampler",
    "NoiseSource",
    "PerSampleNoise",
    "Sampler",
    "SpacedDiffusion",
    "Trajectory",
    "center_mask",
    "inpaint_replacement",
    "iter_samples",
    "make_sampler",
    "make_timesteps",
    "sample",
    "sampler_names",
    "with_guidance",
]
