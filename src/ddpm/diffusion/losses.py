"""Training losses, one small class each (called as ``loss(model, diffusion, x0, generator)``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ddpm.diffusion.gaussian import GaussianDiffusion

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
