"""A Gaussian "oracle" for testing samplers: data with a closed-form optimal denoiser.

For x_0 ~ N(m, diag(s^2)) the forward marginal is x_t ~ N(sqrt(abar_t) m, abar_t s^2 + 1 - abar_t)
per dimension, so the MMSE noise predictor is exactly

    eps*(x_t, t) = sqrt(1 - abar_t) (x_t - sqrt(abar_t) m) / (abar_t s^2 + 1 - abar_t).

Every sampler driven by it should return samples from N(m, diag(s^2)) up to its discretisation
error. As eps* is affine in x_t, every sampler here (without clipping) is an affine function of its
Gaussian draws, so its output is exactly Gaussian; :func:`exact_moments` computes that Gaussian's
mean and variance per dimension with no Monte Carlo error by feeding unit impulses as noise.

:class:`ClassConditionalOracle` extends it to classes: class k is N(m_k, diag(s_k^2)) (its exact eps is
the one above) and the unconditional data are their mixture with weights pi_k, whose exact eps is the
posterior-weighted component eps (the score of a mixture is the responsibility-weighted component score):

    eps_u(x_t, t) = sum_k r_k(x_t) eps_k(x_t, t),
    r_k(x_t) ∝ pi_k N(x_t; sqrt(abar_t) m_k, abar_t s_k^2 + 1 - abar_t).

For closed-form guidance tests the unconditional model can instead be one given Gaussian (``null``),
which keeps guided eps affine in x_t (so :func:`exact_moments` applies).
"""

from __future__ import annotations

import math
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


def gaussian_eps(x_t: Tensor, abar: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """eps*(x_t, t) of data N(mean, diag(std^2)) (module docstring), float64; ``abar`` broadcasts."""
    return (1 - abar).sqrt() * (x_t - abar.sqrt() * mean) / (abar * std**2 + 1 - abar)


class ClassConditionalOracle:
    """Exact ``model(x_t, t, class_labels=y)`` for classes N(means[k], diag(stds[k]^2)), k < K.

    Label ``-1`` (the null class) or no labels: the exact eps of the mixture sum_k weights[k] N(...) or,
    with ``null=(mean, std)``, of that one Gaussian. ``batch_sizes`` records the rows of every call.
    """

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        means: Tensor,
        stds: Tensor,
        weights: Tensor | None = None,
        null: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        self.diffusion = diffusion
        self.means = means.to(torch.float64)
        self.stds = stds.to(torch.float64)
        k = self.means.shape[0]
        weights = torch.full((k,), 1.0 / k) if weights is None else weights / weights.sum()
        self.weights = weights.to(torch.float64)
        self.null = None if null is None else (null[0].to(torch.float64), null[1].to(torch.float64))
        self.batch_sizes: list[int] = []

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.means.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(self.means.shape[0])

    def component(self, label: int) -> GaussianOracle:
        """The (unconditional) oracle of class ``label``'s Gaussian."""
        return GaussianOracle(self.diffusion, self.means[label], self.stds[label])

    def mixture_eps(self, x_t: Tensor, abar: Tensor) -> Tensor:
        """Exact eps of the mixture: responsibilities r_k(x_t) times component eps (float64)."""
        x = x_t[:, None]  # [B, 1, *shape] against the K components [K, *shape]
        a = abar[:, None]
        var = a * self.stds**2 + 1 - a
        logpdf = -0.5 * ((x - a.sqrt() * self.means) ** 2 / var + var.log() + math.log(2 * math.pi))
        log_r = logpdf.flatten(2).sum(-1) + self.weights.log()
        r = torch.softmax(log_r, dim=1).view(*log_r.shape, *([1] * len(self.shape)))
        return (r * gaussian_eps(x, a, self.means, self.stds)).sum(1)

    def __call__(self, x_t: Tensor, t: Tensor, class_labels: Tensor | None = None, **cond: Tensor) -> Tensor:
        self.batch_sizes.append(int(x_t.shape[0]))
        b, x = x_t.shape[0], x_t.double()
        abar = self.diffusion.alphas_cumprod.to(x_t.device)[t].view(-1, *([1] * (x_t.dim() - 1)))
        labels = torch.full((b,), -1, dtype=torch.long) if class_labels is None else class_labels.long()
        out = torch.empty_like(x)
        known = labels >= 0
        if known.any():
            k = labels[known]
            out[known] = gaussian_eps(x[known], abar[known], self.means[k], self.stds[k])
        if (~known).any():
            if self.null is None:
                out[~known] = self.mixture_eps(x[~known], abar[~known])
            else:
                out[~known] = gaussian_eps(x[~known], abar[~known], *self.null)
        return out.to(x_t.dtype)

    def sample_data(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One draw of x_0 per label (float32)."""
        z = torch.randn((labels.shape[0], *self.shape), generator=generator, dtype=torch.float64)
        return (self.means[labels] + self.stds[labels] * z).float()


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
    sampler: Sampler,
    model: GaussianOracle | ClassConditionalOracle,
    max_draws: int | None = None,
    label: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Exact per-dimension mean and variance of ``sampler``'s output under the oracle (float64).

    The sampler must be affine in its noise (true for every sampler here with ``clip_denoised=False``
    and an affine model): then output = a + sum_c b_c z_c with independent z_c ~ N(0, 1) per
    dimension, the mean is the output for all-zero noise and the variance is sum_c b_c^2. ``label``:
    every image is asked for that class (``class_labels``), e.g. on a :class:`ClassConditionalOracle`.
    """
    max_draws = max_draws or sampler.num_steps + 1
    noise = ImpulseNoise(max_draws + 1)
    cond = None if label is None else {"class_labels": torch.full((max_draws + 1,), label, dtype=torch.long)}
    out = sampler.sample(model, model.shape, noise, "cpu", cond=cond).double()
    mean = out[0]
    var = ((out[1 : noise.calls + 1] - mean) ** 2).sum(0)
    return mean, var


def sample_moments(samples: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension sample mean and unbiased variance (float64)."""
    samples = samples.double()
    return samples.mean(0), samples.var(0, unbiased=True)


__all__ = [
    "ClassConditionalOracle",
    "GaussianOracle",
    "ImpulseNoise",
    "exact_moments",
    "gaussian_eps",
    "sample_moments",
]
