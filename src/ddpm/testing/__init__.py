"""Test and benchmark infrastructure, not part of the modelling library.

:mod:`ddpm.testing.oracle`: a Gaussian data distribution with a closed-form optimal denoiser and the
exact output moments of any sampler driven by it. :mod:`ddpm.testing.noise`: :class:`BatchNoise`, one
generator for a whole batch (cheap Monte-Carlo runs with thousands of samples).
"""

from ddpm.testing.noise import BatchNoise
from ddpm.testing.oracle import GaussianOracle, ImpulseNoise, exact_moments, sample_moments

__all__ = ["BatchNoise", "GaussianOracle", "ImpulseNoise", "exact_moments", "sample_moments"]
