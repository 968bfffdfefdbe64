"""Terms of the variational bound (eq. 5 of Ho et al. 2020), in nats unless stated otherwise.

L = L_T + sum_{t>1} L_{t-1} + L_0 with
  L_T     = KL(q(x_T | x_0) || N(0, I))                     (prior term)
  L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))   (Gaussian KLs)
  L_0     = -log p_theta(x_0 | x_1)                          (discretised Gaussian decoder, eq. 13)

:func:`bound_terms` evaluates every term of the bound for a batch of images (one network call per
timestep, as the official code's ``calc_bpd_loop`` beside ``_vb_terms_bpd``) and
:func:`rate_distortion_curve` turns mean terms into the rate-distortion curve of the paper's
progressive lossy compression (Sec. 4.3, Fig. 5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from ddpm.diffusion.denoiser import Cond, Model
from ddpm.diffusion.gaussian import GaussianDiffusion, ReverseParams

LOG2 = math.log(2.0)


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """Elementwise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2)))."""
    return 0.5 * (
        -1.0 + logvar2 - logvar1 + (logvar1 - logvar2).exp() + (mean1 - mean2) ** 2 * (-logvar2).exp()
    )


def approx_standard_normal_cdf(x: Tensor) -> Tensor:
    """The tanh approximation of the standard normal CDF used by the official implementation."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """Elementwise log-probability of 8-bit data x in [-1, 1] under a Gaussian discretised into 256 bins.

    Bins have width 2/255; the first and last bins extend to -inf and +inf (eq. 13).
    """
    centered = x - mean
    inv_stdv = torch.exp(-log_scale)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = cdf_plus.clamp(min=1e-12).log()
    log_one_minus_cdf_min = (1.0 - cdf_min).clamp(min=1e-12).log()
    log_probs = torch.where(
        x < -0.999,
        log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_min, (cdf_plus - cdf_min).clamp(min=1e-12).log()),
    )
    return log_probs


def mean_flat(x: Tensor) -> Tensor:
    """Mean over every dimension but the batch."""
    return x.mean(dim=tuple(range(1, x.dim())))


def prior_bpd(diffusion: GaussianDiffusion, x0: Tensor) -> Tensor:
    """L_T in bits/dim, per example: KL(q(x_T | x_0) || N(0, I))."""
    t = torch.full((x0.shape[0],), diffusion.num_timesteps - 1, device=x0.device, dtype=torch.long)
    mean, _, log_variance = diffusion.q_mean_variance(x0, t)
    kl = normal_kl(mean, log_variance, torch.zeros_like(mean), torch.zeros_like(mean))
    return mean_flat(kl) / LOG2


def vlb_term_bpd(
    diffusion: GaussianDiffusion,
    model_output: Tensor,
    x0: Tensor,
    x_t: Tensor,
    t: Tensor,
    clip_denoised: bool = False,
) -> Tensor:
    """L_{t-1} in bits/dim per example: the Gaussian KL for t > 0, the decoder NLL L_0 for t = 0."""
    params = diffusion.p_mean_variance(model_output, x_t, t, clip_denoised=clip_denoised)
    return _term_bpd(diffusion, params, x0, x_t, t)


def _term_bpd(
    diffusion: GaussianDiffusion, params: ReverseParams, x0: Tensor, x_t: Tensor, t: Tensor
) -> Tensor:
    """:func:`vlb_term_bpd` given p_theta(x_{t-1} | x_t) (official ``_vb_terms_bpd``)."""
    true_mean, _, true_log_variance = diffusion.q_posterior(x0, x_t, t)
    kl = mean_flat(normal_kl(true_mean, true_log_variance, params.mean, params.log_variance)) / LOG2
    decoder_nll = (
        -mean_flat(discretized_gaussian_log_likelihood(x0, params.mean, 0.5 * params.log_variance)) / LOG2
    )
    return torch.where(t == 0, decoder_nll, kl)


# ---------------------------------------------------------------------- the whole bound, per image
class NoiseSource(Protocol):
    """Anything that draws standard normal tensors ``[B, *shape]`` (e.g. ``ddpm.sampling.PerSampleNoise``):
    the noise of the bound's q(x_t | x_0) draws and of every sampler."""

    batch_size: int

    def randn(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor: ...


@dataclass
class BoundTerms:
    """Per-image terms of the bound, in bits/dim: ``prior`` [B], ``terms`` [B, T] (index t: the paper's
    L_t, so ``terms[:, 0]`` is the decoder L_0), and the mean squared eps / x_0 prediction errors [B, T]."""

    prior: Tensor
    terms: Tensor
    eps_mse: Tensor
    x0_mse: Tensor

    @property
    def total(self) -> Tensor:
        """The bound L (eq. 5) per image: L_T + sum_t L_t."""
        return self.prior + self.terms.sum(1)


@torch.no_grad()
def bound_term_at(
    model: Model,
    diffusion: GaussianDiffusion,
    x0: Tensor,
    eps: Tensor,
    t: int,
    *,
    clip_denoised: bool = True,
    cond: Cond | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One timestep of the bound per image (float64 [B] each): ``(L_t bits/dim, eps MSE, x_0 MSE)``.

    x_t = q_sample(x0, t, eps) (eq. 4); L_t is the KL of eq. 5 for t > 0 and the decoder NLL (eq. 13)
    for t = 0; the errors are those of the eps and (clipped, if ``clip_denoised``) x_0 predictions.
    """
    tt = torch.full((x0.shape[0],), int(t), device=x0.device, dtype=torch.long)
    x_t = diffusion.q_sample(x0, tt, eps)
    output = model(x_t, tt, **(cond or {}))
    params = diffusion.p_mean_variance(output, x_t, tt, clip_denoised=clip_denoised)
    term = _term_bpd(diffusion, params, x0, x_t, tt).double()
    eps_mse = mean_flat((params.pred_eps.float() - eps) ** 2).double()
    x0_mse = mean_flat((params.pred_x0.float() - x0) ** 2).double()
    return term, eps_mse, x0_mse


@torch.no_grad()
def bound_terms(
    model: Model,
    diffusion: GaussianDiffusion,
    x0: Tensor,
    noise: NoiseSource,
    *,
    clip_denoised: bool = True,
    cond: Cond | None = None,
) -> BoundTerms:
    """All terms of the bound (eq. 5) for a batch of images x0 in [-1, 1] (one network call per timestep).

    Timesteps run from T-1 down to 0 and each draws its eps from ``noise`` (``noise.randn(x0.shape[1:],
    device, dtype)``), so per-image noise sources make an image's bound independent of its batch.
    ``clip_denoised=True`` (the official default) evaluates the bound of the model as it samples, with
    x_0 predictions clipped to [-1, 1]; either choice gives a valid bound.
    """
    steps: list[tuple[Tensor, Tensor, Tensor]] = []  # t = T-1, ..., 0
    for t in reversed(range(diffusion.num_timesteps)):
        eps = noise.randn(x0.shape[1:], x0.device, x0.dtype)
        steps.append(bound_term_at(model, diffusion, x0, eps, t, clip_denoised=clip_denoised, cond=cond))
    terms, eps_mse, x0_mse = (torch.stack(values[::-1], dim=1) for values in zip(*steps))
    return BoundTerms(prior_bpd(diffusion, x0).double(), terms, eps_mse, x0_mse)


def rate_distortion_curve(
    prior_bpd: Tensor | float, terms_bpd: Tensor, x0_mse: Tensor
) -> tuple[Tensor, Tensor]:
    """The paper's rate-distortion curve (Sec. 4.3, Fig. 5) from mean terms, indexed by timestep k.

    ``terms_bpd`` [T] are the mean L_k (k = 0 the decoder) and ``x0_mse`` [T] the mean squared error of
    the x_0 prediction from x_{k+1} (paper index). Returns float64 ``(rate_bpd, distortion_rmse)``:
    ``rate_bpd[k] = L_T + sum_{j>k} L_j``, the bits sent once x_{k+1} is known (the current term is not
    yet sent: ``rate_bpd[T-1]`` is the prior alone and ``rate_bpd[0]`` is the bound minus the decoder
    term L_0); ``distortion_rmse[k] = sqrt(x0_mse[k])`` on the [0, 255] pixel scale.
    """
    terms = torch.as_tensor(terms_bpd, dtype=torch.float64)
    tail = torch.flip(torch.cumsum(torch.flip(terms, [0]), 0), [0])  # tail[k] = sum_{j >= k} L_j
    rate = prior_bpd + tail - terms
    distortion = torch.as_tensor(x0_mse, dtype=torch.float64).sqrt() * 127.5
    return rate, distortion
