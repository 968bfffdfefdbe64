"""A Gaussian "oracle" for testing samplers: data with a closed-form optimal denoiser.

For x_0 ~ N(m, diag(s^2)) the forward marginal is x_t ~ N(sqrt(abar_t) m, abar_t s^2 + 1 - abar_t)
per dimension, so the MMSE noise predictor is exactly

    eps*(x_t, t) = sqrt(1 - abar_t) (x_t - sqrt(abar_t) m) / (abar_t s^2 + 1 - abar_t).

Every sampler driven by it should return samples from N(m, diag(s^2)) up to its discretisation
error. As eps* is affine in x_t, every sampler here (without clipping) is an affine function of its
Gaussian draws, so its output is exactly Gaussian; :func:`exact_moments` computes that Gaussian's
mean and variance per dimension with no Monte Carlo error by feeding unit impulses as noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.sampling.base import Sampler
from ddpm.sampling.noise import NoiseSource


class GaussianOracle:
    """The exact eps-predictor ``model(x_t, t, **cond)`` for data N(mean, diag(std^2)) under ``diffusion``."""

    def __init__(self, diffusion: GaussianDiffusion, mean: Tensor, std: Tensor) -> None:
        self.diffusion = diffusion
        self.mean = mean.to(torch.float64)
        self.std = std.to(torch.float64)
        self.calls = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mean.shape)

    def __call__(self, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        """eps*(x_t, t) (see the module docstring); conditioning, if any, is ignored."""
        self.calls += 1
        abar = self.diffusion.alphas_cumprod.to(x_t.device)[t].view(-1, *([1] * (x_t.dim() - 1)))
        m = self.mean.to(x_t.device)
        var = self.std.to(x_t.device) ** 2
        eps = (1 - abar).sqrt() * (x_t.double() - abar.sqrt() * m) / (abar * var + 1 - abar)
        return eps.to(x_t.dtype)

    def sample_data(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of x_0 (float32)."""
        z = torch.randn((n, *self.shape), generator=generator, dtype=torch.float64)
        return (self.mean + self.std * z).float()

    def frechet_distance(self, mean: Tensor, var: Tensor) -> float:
        """Frechet (2-Wasserstein^2) distance between N(mean, diag var) and the data Gaussian."""
        return float(
            ((mean.double() - self.mean) ** 2).sum()
            + ((var.double().clamp(min=0).sqrt() - self.std) ** 2).sum()
        )


class ImpulseNoise(NoiseSource):
    """Noise for :func:`exact_moments`: draw number c is 1 for sample c + 1 and 0 for every other sample.

    Always float64, whatever dtype is asked for, so that the whole chain runs in double precision.
    """

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.calls = 0

    def randn(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
        if self.calls + 1 >= self.batch_size:
            raise RuntimeError(f"the sampler drew more than {self.batch_size - 1} noise tensors")
        out = torch.zeros((self.batch_size, *shape), device=device, dtype=torch.float64)
        out[self.calls + 1] = 1.0
        self.calls += 1
        return out


@torch.no_grad()
def exact_moments(
    sampler: Sampler, model: GaussianOracle, max_draws: int | None = None
) -> tuple[Tensor, Tensor]:
    """Exact per-dimension mean and variance of ``sampler``'s output under the oracle (float64).

    The sampler must be affine in its noise (true for every sampler here with ``clip_denoised=False``
    and an affine model): then output = a + sum_c b_c z_c with independent z_c ~ N(0, 1) per
    dimension, the mean is the output for all-zero noise and the variance is sum_c b_c^2.
    """
    max_draws = max_draws or sampler.num_steps + 1
    noise = ImpulseNoise(max_draws + 1)
    out = sampler.sample(model, model.shape, noise, "cpu").double()
    mean = out[0]
    var = ((out[1 : noise.calls + 1] - mean) ** 2).sum(0)
    return mean, var


def sample_moments(samples: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension sample mean and unbiased variance (float64)."""
    samples = samples.double()
    return samples.mean(0), samples.var(0, unbiased=True)


__all__ = ["GaussianOracle", "ImpulseNoise", "exact_moments", "sample_moments"]
