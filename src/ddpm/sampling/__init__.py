"""Samplers: each takes any callable ``model(x_t, t) -> output`` and a GaussianDiffusion."""

from ddpm.sampling.ancestral import AncestralSampler, Trajectory
from ddpm.sampling.noise import BatchNoise, NoiseSource, PerSampleNoise

__all__ = ["AncestralSampler", "BatchNoise", "NoiseSource", "PerSampleNoise", "Trajectory"]
