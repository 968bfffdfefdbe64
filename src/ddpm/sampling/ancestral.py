"""DDPM ancestral sampling (Algorithm 2 of Ho et al. 2020)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.sampling.noise import NoiseSource
from ddpm.utils.progress import progress_bar

Model = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Trajectory:
    """Intermediate states of a reverse chain: x_t and the predicted x_0 at the recorded steps."""

    timesteps: list[int] = field(default_factory=list)
    x_t: list[Tensor] = field(default_factory=list)
    pred_x0: list[Tensor] = field(default_factory=list)


class AncestralSampler:
    """x_{t-1} = mu_theta(x_t, t) + sigma_t z for t = T..1, z = 0 at the last step (Algorithm 2).

    The reverse variance is the diffusion's ``var_type`` (fixed-large for CIFAR-10, fixed-small for
    LSUN in the paper); the predicted x_0 is clipped to [-1, 1] when ``clip_denoised``.
    """

    def __init__(self, diffusion: GaussianDiffusion, clip_denoised: bool = True) -> None:
        self.diffusion = diffusion
        self.clip_denoised = clip_denoised

    @property
    def num_steps(self) -> int:
        return self.diffusion.num_timesteps

    def p_sample(self, model: Model, x_t: Tensor, t: int, noise: NoiseSource):
        """One reverse step from x_t at integer timestep t; returns (x_{t-1}, ReverseParams)."""
        tt = torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long)
        params = self.diffusion.p_mean_variance(model(x_t, tt), x_t, tt, self.clip_denoised)
        if t == 0:
            return params.mean, params
        z = noise.randn(x_t.shape[1:], x_t.device, x_t.dtype)
        return params.mean + (0.5 * params.log_variance).exp() * z, params

    @torch.no_grad()
    def sample(
        self,
        model: Model,
        shape: Sequence[int],
        noise: NoiseSource,
        device: torch.device | str = "cpu",
        progress: bool = False,
        record_every: int = 0,
        trajectory: Trajectory | None = None,
    ) -> Tensor:
        """Run the whole chain from x_T ~ N(0, I); returns x_0 of shape [B, *shape].

        With ``record_every > 0`` and a ``trajectory``, x_t and the predicted x_0 are stored every
        ``record_every`` steps and at the last step (the paper's progressive generation, Fig. 6).
        """
        device = torch.device(device)
        x = noise.randn(shape, device, torch.float32)
        steps = range(self.diffusion.num_timesteps - 1, -1, -1)
        for t in progress_bar(steps, enabled=progress, description="sampling"):
            x, params = self.p_sample(model, x, t, noise)
            if trajectory is not None and record_every > 0 and (t % record_every == 0 or t == 0):
                trajectory.timesteps.append(t)
                trajectory.x_t.append(x.detach().cpu())
                trajectory.pred_x0.append(params.pred_x0.detach().cpu())
        return x

    def progressive(
        self,
        model: Model,
        shape: Sequence[int],
        noise: NoiseSource,
        device: torch.device | str = "cpu",
        record_every: int = 100,
        progress: bool = False,
    ) -> tuple[Tensor, Trajectory]:
        """The chain plus its trajectory: (x_0, Trajectory of x_t and predicted x_0)."""
        trajectory = Trajectory()
        x0 = self.sample(model, shape, noise, device, progress, record_every, trajectory)
        return x0, trajectory
