"""Diffusion maths in plain PyTorch (no Lightning)."""

from ddpm.diffusion.gaussian import GaussianDiffusion, ReverseParams, broadcast_at
from ddpm.diffusion.losses import HybridLoss, SimpleLoss, VLBLoss, mean_flat, sample_timesteps
from ddpm.diffusion.schedules import make_betas
from ddpm.diffusion.timestep_sampler import LossAwareTimestepSampler, UniformTimestepSampler

__all__ = [
    "GaussianDiffusion",
    "HybridLoss",
    "LossAwareTimestepSampler",
    "ReverseParams",
    "SimpleLoss",
    "UniformTimestepSampler",
    "VLBLoss",
    "broadcast_at",
    "make_betas",
    "mean_flat",
    "sample_timesteps",
]
