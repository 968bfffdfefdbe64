"""What every sampler shares: the sampler protocol, the chain base class and trajectory records.

A sampler is built as ``Sampler(diffusion, **settings)`` and used as
``sampler.sample(model, shape, noise, device, progress, cond=cond) -> x_0`` where ``model`` is the
project's one model call ``model(x_t, t, **cond) -> output`` (:class:`ddpm.diffusion.denoiser.Model`;
``t``: int64 tensor [B] of ORIGINAL timestep indices ``0..T-1``; the output is what the diffusion's
``mean_type``/``var_type`` say: eps, x_0, mu or v, plus the variance half for a learned variance).
``sampler.num_steps`` is the number of network evaluations per image (two per level but the last for
Heun) and ``sampler.timesteps`` the increasing original indices the chain visits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from ddpm.diffusion.denoiser import Cond, Model
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling.noise import NoiseSource
from ddpm.utils.progress import progress_bar


@dataclass
class Trajectory:
    """Intermediate states of a reverse chain: x_t and the predicted x_0 at the recorded steps.

    ``timesteps[k]`` is the ORIGINAL index t at which the network was evaluated; ``x_t[k]`` is the
    state after that step and ``pred_x0[k]`` the network's (clipped) prediction of x_0 at t.
    """

    timesteps: list[int] = field(default_factory=list)
    x_t: list[Tensor] = field(default_factory=list)
    pred_x0: list[Tensor] = field(default_factory=list)

    def record(self, t: int, x: Tensor, pred_x0: Tensor) -> None:
        self.timesteps.append(int(t))
        self.x_t.append(x.detach().cpu())
        self.pred_x0.append(pred_x0.detach().cpu())


@runtime_checkable
class Sampler(Protocol):
    """The interface of every sampler (:class:`AncestralSampler`, :class:`DDIMSampler`,
    :class:`DPMSolverPPSampler`, :class:`HeunSampler`, and a :class:`GuidedSampler` around any of them)."""

    timesteps: list[int]

    @property
    def num_steps(self) -> int: ...

    def sample(
        self,
        model: Model,
        shape: Sequence[int],
        noise: NoiseSource,
        device: torch.device | str = "cpu",
        progress: bool = False,
        *,
        cond: Cond | None = None,
    ) -> Tensor: ...


class ChainSampler:
    """What the samplers share: ``sample`` draws x_T ~ N(0, I) and ``sample_from`` decodes it by the
    subclass's :meth:`chain` (a generator of steps), recording a trajectory and showing progress;
    :meth:`predict` gives the (x_0, eps) a model call implies."""

    timesteps: list[int]
    diffusion: GaussianDiffusion
    clip_denoised: bool
    label = "sampling"  # the progress bar's description

    def predict(
        self, model: Model, x_t: Tensor, t: int, *, cond: Cond | None = None, clip: bool | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(x0_hat, eps_hat)`` of the model at ``x_t`` and timestep ``t`` (an index of ``self.diffusion``).

        The output is read as the diffusion's ``mean_type`` says (eps: x_0 by inverting eq. 4; x_0;
        v; mu: inverting eq. 7); x0_hat is clipped to [-1, 1] when ``clip`` (default ``clip_denoised``)
        and eps_hat is then the one consistent with it (DDIM's f_theta, eq. 9, and its eps).
        """
        tt = full_timestep(t, x_t)
        clip = self.clip_denoised if clip is None else clip
        return self.diffusion.predict_x0_eps(model(x_t, tt, **(cond or {})), x_t, tt, clip)

    def chain_index(self, t: int) -> int:
        """The position of ORIGINAL timestep ``t`` in ``self.timesteps``; a ConfigError if it is not there."""
        if t not in self.timesteps:
            raise ConfigError(f"timestep {t} is not on this sampler's chain: use one of sampler.timesteps")
        return self.timesteps.index(t)

    @torch.no_grad()
    def sample(
        self,
        model: Model,
        shape: Sequence[int],
        noise: NoiseSource,
        device: torch.device | str = "cpu",
        progress: bool = False,
        *,
        record_every: int = 0,
        trajectory: Trajectory | None = None,
        cond: Cond | None = None,
    ) -> Tensor:
        """Run the chain from x_T ~ N(0, I) at its last timestep; returns x_0 of shape [B, *shape].

        With ``record_every > 0`` and a ``trajectory``, x_t and the predicted x_0 are stored every
        ``record_every`` steps and at the last step (the paper's progressive generation, Fig. 6).
        ``cond`` (per-image tensors, leading dim B) is passed to every model call.
        """
        x = noise.randn(shape, torch.device(device), torch.float32)
        return self.sample_from(
            model,
            x,
            self.timesteps[-1],
            noise,
            progress,
            record_every=record_every,
            trajectory=trajectory,
            cond=cond,
        )

    @torch.no_grad()
    def sample_from(
        self,
        model: Model,
        x_t: Tensor,
        t: int,
        noise: NoiseSource | None = None,
        progress: bool = False,
        *,
        record_every: int = 0,
        trajectory: Trajectory | None = None,
        cond: Cond | None = None,
        **options: Any,
    ) -> Tensor:
        """Decode a given x_t at ORIGINAL timestep ``t`` (on the chain) down to x_0: the steps of
        :meth:`chain` from ``t``'s position (``options`` are the subclass's, e.g. the ancestral ``hook``).

        ``noise`` may be None for a deterministic chain. The trajectory records :meth:`state` after each
        recorded step and the model's x_0 prediction there.
        """
        start = self.chain_index(t)
        x = x_t
        steps = self.chain(model, x_t, start, noise, cond, **options)
        for i, x, pred_x0 in progress_bar(steps, enabled=progress, description=self.label, total=start + 1):
            if should_record(trajectory, record_every, i):
                trajectory.record(self.timesteps[i], self.state(x, i), pred_x0)
        return x

    def chain(
        self, model: Model, x_t: Tensor, start: int, noise: NoiseSource | None, cond: Cond | None
    ) -> Iterator[tuple[int, Tensor, Tensor]]:
        """The sampler's steps from ``x_t`` at chain position ``start`` down to x_0 (after position 0):
        yields ``(i, x, pred_x0)`` after the step from position i, its last ``x`` being x_0."""
        raise NotImplementedError

    def state(self, x: Tensor, i: int) -> Tensor:
        """The DDPM-scale x_t of a state :meth:`chain` yielded after position ``i`` (the same here)."""
        return x


def cpu64(values: Tensor) -> Tensor:
    """A float64 CPU copy of a schedule table: a sampler reads it at every step without a device sync."""
    return values.detach().cpu().to(torch.float64)


def full_timestep(t: int, like: Tensor) -> Tensor:
    """An int64 tensor [B] filled with ``t`` on ``like``'s device."""
    return torch.full((like.shape[0],), int(t), device=like.device, dtype=torch.long)


def should_record(trajectory: Trajectory | None, record_every: int, index: int) -> bool:
    """Record chain position ``index`` (0 = the last step) every ``record_every`` steps and at the end."""
    return trajectory is not None and record_every > 0 and (index % record_every == 0 or index == 0)


__all__ = ["ChainSampler", "Sampler", "Trajectory", "cpu64", "full_timestep", "should_record"]
