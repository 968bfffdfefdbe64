"""Terms of the variational bound (eq. 5 of Ho et al. 2020), in nats unless stated otherwise.

L = L_T + sum_{t>1} L_{t-1} + L_0 with
  L_T     = KL(q(x_T | x_0) || N(0, I))                     (prior term)
  L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))   (Gaussian KLs)
  L_0     = -log p_theta(x_0 | x_1)                          (discretised Gaussian decoder, eq. 13)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ddpm.diffusion.gaussian import GaussianDiffusion

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


def mean_over_pixels(x: Tensor) -> Tensor:
    return x.mean(dim=tuple(range(1, x.dim())))


def prior_bpd(diffusion: GaussianDiffusion, x0: Tensor) -> Tensor:
    """L_T in bits/dim, per example: KL(q(x_T | x_0) || N(0, I))."""
    t = torch.full((x0.shape[0],), diffusion.num_timesteps - 1, device=x0.device, dtype=torch.long)
    mean, _, log_variance = diffusion.q_mean_variance(x0, t)
    kl = normal_kl(mean, log_variance, torch.zeros_like(mean), torch.zeros_like(mean))
    return mean_over_pixels(kl) / LOG2


def vlb_term_bpd(
    diffusion: GaussianDiffusion,
    model_output: Tensor,
    x0: Tensor,
    x_t: Tensor,
    t: Tensor,
    clip_denoised: bool = False,
) -> Tensor:
    """L_{t-1} in bits/dim per example: the Gaussian KL for t > 0, the decoder NLL L_0 for t = 0."""
    true_mean, _, true_log_variance = diffusion.q_posterior(x0, x_t, t)
    params = diffusion.p_mean_variance(model_output, x_t, t, clip_denoised=clip_denoised)
    kl = mean_over_pixels(normal_kl(true_mean, true_log_variance, params.mean, params.log_variance)) / LOG2
    decoder_nll = (
        -mean_over_pixels(discretized_gaussian_log_likelihood(x0, params.mean, 0.5 * params.log_variance))
        / LOG2
    )
    return torch.where(t == 0, decoder_nll, kl)
