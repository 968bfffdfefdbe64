"""Diffusion maths in plain PyTorch (no Lightning)."""

from ddpm.diffusion.gaussian import GaussianDiffusion, ReverseParams, broadcast_at
from ddpm.diffusion.losses import SimpleLoss, mean_flat, sample_timesteps
from ddpm.diffusion.schedules import make_betas

__all__ = [
    "GaussianDiffusion",
    "ReverseParams",
    "SimpleLoss",
    "broadcast_at",
    "make_betas",
    "mean_flat",
    "sample_timesteps",
]
