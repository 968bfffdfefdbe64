"""Diffusion maths in plain PyTorch (no Lightning)."""

from ddpm.diffusion.denoiser import Cond, Model
from ddpm.diffusion.gaussian import GaussianDiffusion, ReverseParams, broadcast_at
from ddpm.diffusion.likelihood import BoundTerms, bound_terms, mean_flat, rate_distortion_curve
from ddpm.diffusion.losses import HybridLoss, SimpleLoss, VLBLoss
from ddpm.diffusion.schedules import make_betas
from ddpm.diffusion.timestep_sampler import LossAwareTimestepSampler, UniformTimestepSampler, sample_timesteps

__all__ = [
    "BoundTerms",
    "Cond",
    "GaussianDiffusion",
    "HybridLoss",
    "LossAwareTimestepSampler",
    "Model",
    "ReverseParams",
    "SimpleLoss",
    "UniformTimestepSampler",
    "VLBLoss",
    "bound_terms",
    "broadcast_at",
    "make_betas",
    "mean_flat",
    "rate_distortion_curve",
    "sample_timesteps",
]
