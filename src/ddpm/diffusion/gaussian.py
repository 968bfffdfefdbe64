"""The Gaussian diffusion of DDPM: forward process, posterior, and the reverse-process parameters.

Notation follows Ho et al. (2020). Timesteps are 0-based indices ``t`` in ``[0, T)``; index ``t`` is
the paper's step ``t + 1``. Every coefficient is computed once in float64 and cast to the dtype of
the tensor it multiplies, as the official implementation does.

This module knows nothing of Lightning or of any network: it turns network outputs into
distributions; the network itself is called as :mod:`ddpm.diffusion.denoiser` describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ddpm.diffusion.schedules import make_betas
from ddpm.errors import ConfigError

MeanType = Literal["eps", "x0", "mu", "v"]
VarType = Literal["fixed_large", "fixed_small", "learned_range", "learned"]
MEAN_TYPES: tuple[str, ...] = ("eps", "x0", "mu", "v")
VAR_TYPES: tuple[str, ...] = ("fixed_large", "fixed_small", "learned_range", "learned")
# var_types whose network outputs a second half of channels for the variance
LEARNED_VAR_TYPES: tuple[str, ...] = ("learned_range", "learned")


@dataclass
class ReverseParams:
    """Parameters of p_theta(x_{t-1} | x_t) and the model's implied predictions."""

    mean: Tensor
    variance: Tensor
    log_variance: Tensor
    pred_x0: Tensor
    pred_eps: Tensor


def output_channels_factor(var_type: str) -> int:
    """How many times the data channels a network outputs for ``var_type``: 2 for a learned variance
    (mean half and variance half), 1 otherwise."""
    if var_type not in VAR_TYPES:
        raise ConfigError(f"unknown var_type {var_type!r}: choose one of {', '.join(VAR_TYPES)}")
    return 2 if var_type in LEARNED_VAR_TYPES else 1


def broadcast_at(values: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """``values[t]`` cast to ``like.dtype`` and shaped ``[B, 1, ..., 1]`` to broadcast against ``like``."""
    out = values.to(like.device)[t].to(like.dtype)
    return out.view(t.shape[0], *([1] * (like.dim() - 1)))


class GaussianDiffusion(nn.Module):
    """Forward process q, its posterior, and the parameterisations of the reverse process p_theta.

    Args:
        schedule: beta schedule name (``linear`` as in the paper, ``cosine``, ``quadratic``).
        num_timesteps: T (1000 in the paper).
        beta_start, beta_end: endpoints of the linear/quadratic schedules (1e-4, 0.02 in the paper).
        mean_type: what the network predicts: ``eps`` (the paper's choice, eq. 11), ``x0``, the
            posterior mean ``mu`` (the paper's Table 2 baseline) or the velocity
            ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0`` (Salimans & Ho 2022, Sec. 4 and App. D).
        var_type: reverse variance: ``fixed_large`` (sigma_t^2 = beta_t, used for CIFAR-10),
            ``fixed_small`` (sigma_t^2 = posterior variance, used for LSUN), or ``learned_range``
            (improved DDPM's log-space interpolation; the network outputs 2x channels), or ``learned``
            (the DDPM paper's learned diagonal Sigma, Table 2: the second half of the output is
            log sigma_t^2 itself, as in the official code's ``model_var_type="learned"``).
        betas: explicit betas (float64); overrides ``schedule`` (used by timestep respacing).

    Every schedule quantity is a float64 buffer with one entry per timestep (non-persistent: configuration,
    not state), among them the noise levels the samplers and losses read, all from abar_t = prod beta:
    ``snr`` = abar_t / (1 - abar_t) (min-SNR weighting), ``log_snr`` = lambda_t = log(alpha_t / sigma_t)
    = 0.5 log SNR(t) (DPM-Solver's time variable and spacing) and ``sigmas`` = sqrt((1 - abar_t) / abar_t)
    = SNR(t)^(-1/2) (EDM's noise level of the scaled state x_t / sqrt(abar_t)).
    """

    def __init__(
        self,
        schedule: str = "linear",
        num_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        mean_type: MeanType = "eps",
        var_type: VarType = "fixed_large",
        betas: Tensor | None = None,
    ) -> None:
        super().__init__()
        if mean_type not in MEAN_TYPES:
            raise ConfigError(f"unknown mean_type {mean_type!r}: choose one of {', '.join(MEAN_TYPES)}")
        if var_type not in VAR_TYPES:
            raise ConfigError(f"unknown var_type {var_type!r}: choose one of {', '.join(VAR_TYPES)}")
        self.mean_type = mean_type
        self.var_type = var_type
        self.schedule = schedule if betas is None else "custom"
        if betas is None:
            betas = make_betas(schedule, num_timesteps, beta_start, beta_end)
        betas = torch.as_tensor(betas, dtype=torch.float64, device="cpu")
        self.num_timesteps = int(betas.shape[0])

        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat(
            [torch.ones(1, dtype=torch.float64, device="cpu"), alphas_cumprod[:-1]]
        )
        # Posterior q(x_{t-1} | x_t, x_0), eqs. (6)-(7).
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # log of the posterior variance, clipped because it is 0 at t = 0 (official code).
        var_clipped = torch.cat([posterior_variance[1:2], posterior_variance[1:]])

        buffers = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
            "sqrt_recip_alphas_cumprod": (1.0 / alphas_cumprod).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / alphas_cumprod - 1.0).sqrt(),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": var_clipped.log(),
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
            # fixed_large: sigma_t^2 = beta_t, except at t = 0 where the posterior variance is used
            # (it only enters the likelihood; no noise is added at the last step).
            "fixed_large_variance": torch.cat([posterior_variance[1:2], betas[1:]]),
            "snr": alphas_cumprod / (1.0 - alphas_cumprod),
            "log_snr": 0.5 * (alphas_cumprod.log() - torch.log1p(-alphas_cumprod)),
            "sigmas": ((1.0 - alphas_cumprod) / alphas_cumprod).sqrt(),
        }
        for name, value in buffers.items():
            # Non-persistent: the schedule is configuration, not learned state.
            self.register_buffer(name, value, persistent=False)

    def extra_repr(self) -> str:
        return (
            f"T={self.num_timesteps}, schedule={self.schedule}, "
            f"mean_type={self.mean_type}, var_type={self.var_type}"
        )

    # ------------------------------------------------------------------ forward process
    def q_mean_variance(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, variance and log-variance of q(x_t | x_0) (eq. 4)."""
        mean = broadcast_at(self.sqrt_alphas_cumprod, t, x0) * x0
        variance = broadcast_at(1.0 - self.alphas_cumprod, t, x0)
        log_variance = broadcast_at((1.0 - self.alphas_cumprod).log(), t, x0)
        return mean, variance, log_variance

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Draw x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) with the given noise (eq. 4)."""
        return (
            broadcast_at(self.sqrt_alphas_cumprod, t, x0) * x0
            + broadcast_at(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def q_posterior(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (eqs. 6-7)."""
        mean = (
            broadcast_at(self.posterior_mean_coef1, t, x_t) * x0
            + broadcast_at(self.posterior_mean_coef2, t, x_t) * x_t
        )
        variance = broadcast_at(self.posterior_variance, t, x_t)
        log_variance = broadcast_at(self.posterior_log_variance_clipped, t, x_t)
        return mean, variance, log_variance

    # ------------------------------------------------------------------ conversions
    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), inverting eq. 4."""
        return (
            broadcast_at(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
            - broadcast_at(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps
        )

    def eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t), inverting eq. 4."""
        return (broadcast_at(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x0) / broadcast_at(
            self.sqrt_recipm1_alphas_cumprod, t, x_t
        )

    def v_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0, with x_0 from eps (Salimans & Ho 2022, Sec. 4)."""
        return broadcast_at(self.sqrt_alphas_cumprod, t, x_t) * eps - broadcast_at(
            self.sqrt_one_minus_alphas_cumprod, t, x_t
        ) * self.x0_from_eps(x_t, t, eps)

    def x0_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """x_0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v: with alpha = sqrt(abar_t), sigma = sqrt(1 - abar_t),
        (x_t, v) = (alpha x_0 + sigma eps, alpha eps - sigma x_0) is a rotation of (x_0, eps)."""
        return (
            broadcast_at(self.sqrt_alphas_cumprod, t, x_t) * x_t
            - broadcast_at(self.sqrt_one_minus_alphas_cumprod, t, x_t) * v
        )

    def eps_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """eps = sqrt(1 - abar_t) x_t + sqrt(abar_t) v (the same rotation as :meth:`x0_from_v`)."""
        return (
            broadcast_at(self.sqrt_one_minus_alphas_cumprod, t, x_t) * x_t
            + broadcast_at(self.sqrt_alphas_cumprod, t, x_t) * v
        )

    def x0_from_mean(self, x_t: Tensor, t: Tensor, mean: Tensor) -> Tensor:
        """Invert the posterior mean (eq. 7) for x_0 given x_t."""
        coef1 = broadcast_at(self.posterior_mean_coef1, t, x_t)
        coef2 = broadcast_at(self.posterior_mean_coef2, t, x_t)
        return (mean - coef2 * x_t) / coef1

    def mean_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """mu_theta = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) (eq. 11)."""
        betas = broadcast_at(self.betas, t, x_t)
        alphas = broadcast_at(1.0 - self.betas, t, x_t)
        return (x_t - betas / broadcast_at(self.sqrt_one_minus_alphas_cumprod, t, x_t) * eps) / alphas.sqrt()

    # ------------------------------------------------------------------ reverse process
    @property
    def output_channels_factor(self) -> int:
        """How many times the data channels the network must output (2 for learned variance)."""
        return output_channels_factor(self.var_type)

    def split_output(self, output: Tensor) -> tuple[Tensor, Tensor | None]:
        """Split a network output into (mean part, variance part or None)."""
        if self.var_type not in LEARNED_VAR_TYPES:
            return output, None
        mean_part, var_part = output.chunk(2, dim=1)
        return mean_part, var_part

    def reverse_variance(
        self, t: Tensor, like: Tensor, var_part: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Variance and log-variance of p_theta(x_{t-1} | x_t).

        ``learned_range`` interpolates in log space between beta_t and the posterior variance
        (improved DDPM eq. 15) with v = (var_part + 1) / 2.
        """
        if self.var_type == "fixed_large":
            variance = broadcast_at(self.fixed_large_variance, t, like)
            return variance, variance.log()
        if self.var_type == "fixed_small":
            return (
                broadcast_at(self.posterior_variance, t, like),
                broadcast_at(self.posterior_log_variance_clipped, t, like),
            )
        if var_part is None:
            raise ConfigError(f"var_type={self.var_type} needs a network with 2x output channels")
        if self.var_type == "learned":
            return var_part.exp(), var_part
        min_log = broadcast_at(self.posterior_log_variance_clipped, t, like)
        max_log = broadcast_at(self.betas.log(), t, like)
        frac = (var_part + 1) / 2
        log_variance = frac * max_log + (1 - frac) * min_log
        return log_variance.exp(), log_variance

    def p_mean_variance(
        self, model_output: Tensor, x_t: Tensor, t: Tensor, clip_denoised: bool = True
    ) -> ReverseParams:
        """Turn the network output at (x_t, t) into p_theta(x_{t-1} | x_t).

        For eps, x_0 and v prediction the predicted x_0 is optionally clipped to [-1, 1] and the mean is
        the posterior mean (eq. 7) given that x_0 (the official sampler); without clipping this equals
        eq. 11. For mu prediction the network's output is the mean as is and only the reported x_0
        (and eps) is clipped, as the official ``p_mean_variance`` (``diffusion_utils_2.py``) does.
        """
        mean_part, var_part = self.split_output(model_output)
        variance, log_variance = self.reverse_variance(t, x_t, var_part)
        pred_x0, pred_eps = self.predict_x0_eps(model_output, x_t, t, clip_denoised)
        if self.mean_type == "mu":
            mean = mean_part
        else:
            mean, _, _ = self.q_posterior(pred_x0, x_t, t)
        return ReverseParams(mean, variance, log_variance, pred_x0, pred_eps)

    def predict_x0_eps(
        self, model_output: Tensor, x_t: Tensor, t: Tensor, clip_denoised: bool = True
    ) -> tuple[Tensor, Tensor]:
        """``(pred_x0, pred_eps)`` of :meth:`p_mean_variance` without its mean and variance (DDIM's
        update, eq. 12, needs only these): x_0 optionally clipped, eps consistent with it when clipped."""
        mean_part, _ = self.split_output(model_output)
        pred_x0 = self.x0_from_prediction(x_t, t, mean_part)
        if clip_denoised:
            pred_x0 = pred_x0.clamp(-1.0, 1.0)
        if clip_denoised or self.mean_type in ("x0", "mu"):
            pred_eps = self.eps_from_x0(x_t, t, pred_x0)
        elif self.mean_type == "eps":
            pred_eps = mean_part
        else:
            pred_eps = self.eps_from_v(x_t, t, mean_part)
        return pred_x0, pred_eps

    def x0_from_prediction(self, x_t: Tensor, t: Tensor, mean_part: Tensor) -> Tensor:
        """The x_0 implied by the mean half of a network output for this ``mean_type`` (unclipped)."""
        if self.mean_type == "eps":
            return self.x0_from_eps(x_t, t, mean_part)
        if self.mean_type == "x0":
            return mean_part
        if self.mean_type == "v":
            return self.x0_from_v(x_t, t, mean_part)
        return self.x0_from_mean(x_t, t, mean_part)

    def training_target(self, x0: Tensor, x_t: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """The regression target of the network's mean part for this ``mean_type``: eps, x_0, the
        posterior mean (eq. 7) or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0."""
        if self.mean_type == "eps":
            return noise
        if self.mean_type == "x0":
            return x0
        if self.mean_type == "v":
            return (
                broadcast_at(self.sqrt_alphas_cumprod, t, x0) * noise
                - broadcast_at(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0
            )
        mean, _, _ = self.q_posterior(x0, x_t, t)
        return mean
