"""Training losses, one small class each (called as ``loss(model, diffusion, x0, generator)``).

- :class:`SimpleLoss`: L_simple (eq. 14), the paper's choice; MSE on x0 or mu for the other targets.
- :class:`VLBLoss`: the true variational bound L (eq. 5) with the discretised decoder (Table 2 "L").
- :class:`HybridLoss`: improved DDPM's L_simple + 0.001 L_vlb with a stop-gradient on the mean.

The VLB losses take an optional timestep sampler (:mod:`ddpm.diffusion.timestep_sampler`) for
improved DDPM's importance sampling of t.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.likelihood import prior_bpd, vlb_term_bpd
from ddpm.errors import ConfigError

Model = Callable[[Tensor, Tensor], Tensor]


def mean_flat(x: Tensor) -> Tensor:
    """Mean over every dimension but the batch."""
    return x.mean(dim=tuple(range(1, x.dim())))


def sample_timesteps(batch: int, num_timesteps: int, device: torch.device, generator=None) -> Tensor:
    """t ~ Uniform{0, ..., T-1} (the paper's Uniform{1, ..., T}), shape [batch], int64."""
    return torch.randint(0, num_timesteps, (batch,), device=device, generator=generator)


class SimpleLoss(nn.Module):
    """L_simple (eq. 14): || target - f_theta(x_t, t) ||^2 averaged over pixels, t ~ Uniform.

    The target is eps for the paper's eps-prediction, and x0 or the posterior mean for the other
    parameterisations (the paper's Table 2 "MSE" rows). For a learned-variance network only the
    mean half of the output is regressed. Returns the per-example loss, shape [B].
    """

    def forward(
        self,
        model: Model,
        diffusion: GaussianDiffusion,
        x0: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        t = sample_timesteps(x0.shape[0], diffusion.num_timesteps, x0.device, generator)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        x_t = diffusion.q_sample(x0, t, noise)
        mean_part, _ = diffusion.split_output(model(x_t, t))
        target = diffusion.training_target(x0, x_t, t, noise)
        return mean_flat((target - mean_part.float()) ** 2)


# ---------------------------------------------------------------------- variational bound losses
class _TimestepMixin(nn.Module):
    """Draws (t, importance weights) from ``timestep_sampler`` while training, uniformly otherwise."""

    timestep_sampler: nn.Module | None

    def _draw(
        self, diffusion: GaussianDiffusion, x0: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        sampler = self.timestep_sampler
        if sampler is not None and sampler.num_timesteps != diffusion.num_timesteps:
            raise ConfigError(
                f"the timestep sampler has T={sampler.num_timesteps} but the diffusion "
                f"T={diffusion.num_timesteps}: set its num_timesteps to ${{diffusion.num_timesteps}}"
            )
        if sampler is None or not self.training:
            t = sample_timesteps(x0.shape[0], diffusion.num_timesteps, x0.device, generator)
            return t, torch.ones(x0.shape[0], device=x0.device)
        return sampler.sample(x0.shape[0], x0.device, generator)

    def _noised_prediction(
        self, model: Model, diffusion: GaussianDiffusion, x0: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Draw t (and its weights) and eps, form x_t ~ q(x_t | x_0) (eq. 4), run the model on it."""
        t, weights = self._draw(diffusion, x0, generator)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        x_t = diffusion.q_sample(x0, t, noise)
        return t, weights, noise, x_t, model(x_t, t).float()

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
    ) -> Tensor:
        t, weights, _noise, x_t, output = self._noised_prediction(model, diffusion, x0, generator)
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
    ) -> Tensor:
        t, weights, noise, x_t, output = self._noised_prediction(model, diffusion, x0, generator)
        mean_part, var_part = diffusion.split_output(output)
        target = diffusion.training_target(x0, x_t, t, noise)
        mse = mean_flat((target - mean_part) ** 2)
        frozen = mean_part.detach() if var_part is None else torch.cat([mean_part.detach(), var_part], dim=1)
        vb = vlb_term_bpd(diffusion, frozen, x0, x_t, t, clip_denoised=False)
        self._update(t, vb)
        return (mse + self.lambda_vlb * diffusion.num_timesteps * vb) * weights
