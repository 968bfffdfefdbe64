"""Training losses, one small class each, called as ``loss(model, diffusion, x0, generator, cond=None)``.

- :class:`SimpleLoss`: L_simple (eq. 14), the paper's choice; MSE on x0, mu or v for the other targets;
  optionally min-SNR-gamma weighted (:func:`min_snr_weight`).
- :class:`VLBLoss`: the true variational bound L (eq. 5) with the discretised decoder (Table 2 "L").
- :class:`HybridLoss`: improved DDPM's L_simple + 0.001 L_vlb with a stop-gradient on the mean.

Every loss draws t ~ Uniform (Algorithm 1) and eps, forms x_t (eq. 4) and calls the network once as
``model(x_t, t, **cond)`` (:mod:`ddpm.diffusion.denoiser`). The VLB losses take an optional timestep
sampler (:mod:`ddpm.diffusion.timestep_sampler`) for improved DDPM's importance sampling of t.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ddpm.diffusion.denoiser import Cond, Model
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.likelihood import mean_flat, prior_bpd, vlb_term_bpd
from ddpm.diffusion.timestep_sampler import UniformTimestepSampler, sample_timesteps
from ddpm.errors import ConfigError


def noised_prediction(
    model: Model,
    diffusion: GaussianDiffusion,
    x0: Tensor,
    t: Tensor,
    *,
    generator: torch.Generator | None = None,
    cond: Cond | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw eps, form x_t ~ q(x_t | x_0) (eq. 4) and run the model: ``(eps, x_t, output as float32)``."""
    noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = diffusion.q_sample(x0, t, noise)
    return noise, x_t, model(x_t, t, **(cond or {})).float()


LOSS_WEIGHTINGS: tuple[str, ...] = ("none", "min_snr")


def min_snr_weight(diffusion: GaussianDiffusion, t: Tensor, gamma: float) -> Tensor:
    """Min-SNR-gamma weight (Hang et al. 2023) of the MSE on ``diffusion.mean_type``'s target, float64 [B].

    Min-SNR-gamma weights the x_0 error by min(SNR(t), gamma). Given x_t = alpha x_0 + sigma eps
    (alpha^2 = abar_t, sigma^2 = 1 - abar_t, SNR = alpha^2 / sigma^2), a prediction's errors in the three
    parameterisations are tied: eps_hat - eps = -(alpha / sigma)(x0_hat - x_0) and, with
    v = alpha eps - sigma x_0, v_hat - v = -(alpha^2 / sigma + sigma)(x0_hat - x_0) = -(x0_hat - x_0) / sigma.
    Hence ||eps err||^2 = SNR ||x_0 err||^2 and ||v err||^2 = ||x_0 err||^2 / (1 - abar_t) =
    (SNR + 1) ||x_0 err||^2, and the same objective min(SNR, gamma) ||x_0 err||^2 reads

        x0: min(SNR, gamma),    eps: min(SNR, gamma) / SNR,    v: min(SNR, gamma) / (SNR + 1).

    (Implementations that use min(SNR, gamma) / SNR for v weight the x_0 error by
    min(SNR, gamma) (SNR + 1) / SNR instead.) mu-prediction has no such weighting: a ConfigError.
    """
    ratio = diffusion.snr.to(t.device)[t]
    clipped = ratio.clamp(max=float(gamma))
    if diffusion.mean_type == "x0":
        return clipped
    if diffusion.mean_type == "eps":
        return clipped / ratio
    if diffusion.mean_type == "v":
        return clipped / (ratio + 1.0)
    raise ConfigError(
        f"min-SNR weighting is defined for mean_type eps, x0 or v, not {diffusion.mean_type!r}: "
        "use one of those or loss.weighting=none"
    )


class SimpleLoss(nn.Module):
    """L_simple (eq. 14): || target - f_theta(x_t, t) ||^2 averaged over pixels, t ~ Uniform.

    The target is eps for the paper's eps-prediction, and x0, the posterior mean or v for the other
    parameterisations (the paper's Table 2 "MSE" rows; Salimans & Ho 2022). For a learned-variance
    network only the mean half of the output is regressed. Returns the per-example loss, shape [B].

    Args:
        weighting: ``none`` (L_simple, the default) or ``min_snr``: each example's MSE times
            :func:`min_snr_weight` (Hang et al. 2023), for eps, x0 and v targets.
        gamma: the min-SNR clip (5 in Hang et al.).
    """

    def __init__(self, weighting: str = "none", gamma: float = 5.0) -> None:
        super().__init__()
        if weighting not in LOSS_WEIGHTINGS:
            raise ConfigError(
                f"unknown loss weighting {weighting!r}: choose one of {', '.join(LOSS_WEIGHTINGS)}"
            )
        if not float(gamma) > 0:
            raise ConfigError(f"min-SNR gamma={gamma} must be > 0 (Hang et al. use 5)")
        self.weighting = weighting
        self.gamma = float(gamma)

    def forward(
        self,
        model: Model,
        diffusion: GaussianDiffusion,
        x0: Tensor,
        generator: torch.Generator | None = None,
        *,
        cond: Cond | None = None,
    ) -> Tensor:
        t = sample_timesteps(x0.shape[0], diffusion.num_timesteps, x0.device, generator)
        noise, x_t, output = noised_prediction(model, diffusion, x0, t, generator=generator, cond=cond)
        mean_part, _ = diffusion.split_output(output)
        target = diffusion.training_target(x0, x_t, t, noise)
        mse = mean_flat((target - mean_part) ** 2)
        if self.weighting == "none":
            return mse
        return mse * min_snr_weight(diffusion, t, self.gamma).to(mse.dtype)

    def extra_repr(self) -> str:
        return f"weighting={self.weighting}, gamma={self.gamma}" if self.weighting != "none" else ""


# ---------------------------------------------------------------------- variational bound losses
class _TimestepMixin(nn.Module):
    """Draws (t, importance weights) from ``timestep_sampler`` while training, from
    :class:`UniformTimestepSampler` otherwise (the same draw as :class:`SimpleLoss`'s)."""

    timestep_sampler: nn.Module | None

    def _draw(
        self, diffusion: GaussianDiffusion, x0: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        sampler = self.timestep_sampler
        if sampler is not None and sampler.num_timesteps != diffusion.num_timesteps:
            raise ConfigError(
                f"the timestep sampler was built with num_timesteps={sampler.num_timesteps} but the "
                f"diffusion has num_timesteps={diffusion.num_timesteps}; they must be equal"
            )
        if sampler is None or not self.training:
            sampler = UniformTimestepSampler(diffusion.num_timesteps)
        return sampler.sample(x0.shape[0], x0.device, generator)

    def _noised_prediction(
        self,
        model: Model,
        diffusion: GaussianDiffusion,
        x0: Tensor,
        generator: torch.Generator | None,
        cond: Cond | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Draw t (and its weights), then eps, x_t and the output (:func:`noised_prediction`)."""
        t, weights = self._draw(diffusion, x0, generator)
        noise, x_t, output = noised_prediction(model, diffusion, x0, t, generator=generator, cond=cond)
        return t, weights, noise, x_t, output

    def _update(self, t: Tensor, vb: Tensor) -> None:
        if self.timestep_sampler is not None and self.training:
            self.timestep_sampler.update(t, vb.detach())


class VLBLoss(_TimestepMixin):
    """The true variational bound L (eq. 5) as a training loss: one term L_{t-1} per example.

    For t > 0 the term is KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) and for t = 0 the
    discretised Gaussian decoder -log p_theta(x_0 | x_1) (eq. 13), both in bits/dim
    (:func:`ddpm.diffusion.likelihood.vlb_term_bpd`), as the official code's ``loss_type="kl"`` (the
    paper's Table 2 "L" rows). The prior term L_T has no parameters and is left out unless ``rescale``.

    Args:
        timestep_sampler: a :mod:`ddpm.diffusion.timestep_sampler` module (uniform if None); with
            :class:`LossAwareTimestepSampler` the terms are importance weighted by 1 / (T p_t) and its
            history is updated with the (unweighted) terms while training.
        rescale: return T * L_{t-1} + L_T, a per-example unbiased estimate of the whole bound in
            bits/dim (improved DDPM's ``RESCALED_KL``); otherwise the term itself.

    Returns the per-example loss, shape [B].
    """

    def __init__(self, timestep_sampler: nn.Module | None = None, rescale: bool = False) -> None:
        super().__init__()
        self.timestep_sampler = timestep_sampler
        self.rescale = rescale

    def forward(
        self,
        model: Model,
        diffusion: GaussianDiffusion,
        x0: Tensor,
        generator: torch.Generator | None = None,
        *,
        cond: Cond | None = None,
    ) -> Tensor:
        t, weights, _noise, x_t, output = self._noised_prediction(model, diffusion, x0, generator, cond)
        vb = vlb_term_bpd(diffusion, output, x0, x_t, t, clip_denoised=False)
        self._update(t, vb)
        loss = vb * weights
        if self.rescale:
            loss = loss * diffusion.num_timesteps + prior_bpd(diffusion, x0)
        return loss


class HybridLoss(_TimestepMixin):
    """Improved DDPM's L_hybrid = L_simple + lambda L_vlb (Nichol & Dhariwal 2021, eq. 16), lambda = 0.001.

    L_simple regresses the mean half of the output on its target (eps for eps-prediction). The VLB
    term is computed with a stop-gradient on the mean half, so it only trains the variance half of
    a learned-variance network ("L_simple is the main source of signal for the mean", Sec. 3.1);
    with a fixed variance it carries no gradient at all. L_vlb is estimated from one term per example
    as T * L_{t-1} (bits/dim), so for T = 1000 the added term is exactly the official ``vb`` term of
    ``RESCALED_MSE``. With a loss-aware ``timestep_sampler`` both terms are weighted by 1 / (T p_t)
    and the sampler's history is updated with L_{t-1}.

    Returns the per-example loss, shape [B].
    """

    def __init__(self, lambda_vlb: float = 0.001, timestep_sampler: nn.Module | None = None) -> None:
        super().__init__()
        self.lambda_vlb = float(lambda_vlb)
        self.timestep_sampler = timestep_sampler

    def forward(
        self,
        model: Model,
        diffusion: GaussianDiffusion,
        x0: Tensor,
        generator: torch.Generator | None = None,
        *,
        cond: Cond | None = None,
    ) -> Tensor:
        t, weights, noise, x_t, output = self._noised_prediction(model, diffusion, x0, generator, cond)
        mean_part, var_part = diffusion.split_output(output)
        target = diffusion.training_target(x0, x_t, t, noise)
        mse = mean_flat((target - mean_part) ** 2)
        frozen = mean_part.detach() if var_part is None else torch.cat([mean_part.detach(), var_part], dim=1)
        vb = vlb_term_bpd(diffusion, frozen, x0, x_t, t, clip_denoised=False)
        self._update(t, vb)
        return (mse + self.lambda_vlb * diffusion.num_timesteps * vb) * weights
