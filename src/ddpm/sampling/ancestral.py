"""DDPM ancestral sampling (Algorithm 2 of Ho et al. 2020), on the full chain or a respaced one."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from ddpm.diffusion.denoiser import Cond, Model
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling.base import ChainSampler, Trajectory, full_timestep
from ddpm.sampling.noise import NoiseSource
from ddpm.sampling.respace import SpacedDiffusion
from ddpm.sampling.spacing import chain_timesteps

# Called after every step with (x, t_next): the new state and its ORIGINAL timestep (-1 for x_0).
StepHook = Callable[[Tensor, int], Tensor]


class AncestralSampler(ChainSampler):
    """x_{t-1} = mu_theta(x_t, t) + sigma_t z for t = T..1, z = 0 at the last step (Algorithm 2).

    The reverse variance is the diffusion's ``var_type`` (fixed-large for CIFAR-10, fixed-small for
    LSUN in the paper); the predicted x_0 is clipped to [-1, 1] when ``clip_denoised``.

    Respacing (improved DDPM, Sec. 4): with ``steps`` (and ``spacing``) or an explicit increasing
    ``timesteps`` list, the chain runs on a :class:`~ddpm.sampling.respace.SpacedDiffusion` whose
    betas are recomputed for the sub-sequence, beta'_i = 1 - abar_{S_i} / abar_{S_{i-1}}, and the
    network is still called with the original indices S_i. ``steps=T`` reproduces the full chain
    exactly. Without them (the default) the diffusion is used as it is.
    """

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        clip_denoised: bool = True,
        steps: int | None = None,
        spacing: str = "uniform",
        timesteps: Sequence[int] | None = None,
    ) -> None:
        self.base_diffusion = diffusion
        self.clip_denoised = clip_denoised
        self.timesteps = chain_timesteps(diffusion, steps, spacing, timesteps)  # all T without either
        respace = steps is not None or timesteps is not None
        self.diffusion = SpacedDiffusion(diffusion, self.timesteps) if respace else diffusion

    @property
    def num_steps(self) -> int:
        """Network evaluations per image."""
        return self.diffusion.num_timesteps

    @property
    def respaced(self) -> bool:
        return isinstance(self.diffusion, SpacedDiffusion)

    def _wrap(self, model: Model) -> Model:
        return self.diffusion.wrap_model(model) if self.respaced else model

    def p_sample(self, model: Model, x_t: Tensor, t: int, noise: NoiseSource, *, cond: Cond | None = None):
        """One reverse step from x_t at chain index t; returns (x_{t-1}, ReverseParams).

        ``t`` indexes ``self.diffusion`` (the original timestep unless respaced) and ``model`` is called
        with it as is: pass a model wrapped by ``SpacedDiffusion.wrap_model`` when respaced.
        """
        tt = full_timestep(t, x_t)
        out = model(x_t, tt, **(cond or {}))
        params = self.diffusion.p_mean_variance(out, x_t, tt, self.clip_denoised)
        if t == 0:
            return params.mean, params
        z = noise.randn(x_t.shape[1:], x_t.device, x_t.dtype)
        return params.mean + (0.5 * params.log_variance).exp() * z, params

    def chain(
        self,
        model: Model,
        x_t: Tensor,
        start: int,
        noise: NoiseSource | None,
        cond: Cond | None,
        hook: StepHook | None = None,
    ) -> Iterator[tuple[int, Tensor, Tensor]]:
        """Algorithm 2's steps from chain position ``start`` down to x_0.

        ``hook(x, t_next)`` (a ``sample_from`` option) is applied to every new state (``t_next`` its
        original timestep, -1 for x_0): :mod:`ddpm.sampling.inpaint` uses it to condition the chain on
        known pixels.
        """
        if noise is None:
            raise ConfigError("ancestral sampling needs a noise source (z of Algorithm 2)")
        wrapped = self._wrap(model)
        x = x_t
        for i in range(start, -1, -1):
            x, params = self.p_sample(wrapped, x, i, noise, cond=cond)
            if hook is not None:
                x = hook(x, self.timesteps[i - 1] if i > 0 else -1)
            yield i, x, params.pred_x0

    def progressive(
        self,
        model: Model,
        shape: Sequence[int],
        noise: NoiseSource,
        device: torch.device | str = "cpu",
        record_every: int = 100,
        progress: bool = False,
        *,
        cond: Cond | None = None,
    ) -> tuple[Tensor, Trajectory]:
        """The chain plus its trajectory: (x_0, Trajectory of x_t and predicted x_0) (paper Fig. 6)."""
        trajectory = Trajectory()
        x0 = self.sample(
            model, shape, noise, device, progress, record_every=record_every, trajectory=trajectory, cond=cond
        )
        return x0, trajectory


__all__ = ["AncestralSampler", "StepHook", "Trajectory"]
