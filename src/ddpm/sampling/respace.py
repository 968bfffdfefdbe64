"""Timestep respacing (improved DDPM, Nichol & Dhariwal 2021, Sec. 4).

For a sub-sequence S_0 < S_1 < ... < S_{K-1} of the original timesteps, the respaced chain is a
GaussianDiffusion with K steps whose cumulative products are the original ones at S:

    abar'_i = abar_{S_i},   beta'_i = 1 - abar_{S_i} / abar_{S_{i-1}}   (abar_{S_{-1}} = 1).

Where a gap is a single step (S_i = S_{i-1} + 1) the original beta_{S_i} is used as is, so the full
sequence reproduces the original diffusion bit for bit. The network was trained on the original
indices, so it is called with ``t = S_i`` (see :meth:`SpacedDiffusion.wrap_model`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ddpm.diffusion.denoiser import Model
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling.base import cpu64
from ddpm.sampling.spacing import check_timesteps


def chain_alphas_cumprod(diffusion: GaussianDiffusion, timesteps: Sequence[int]) -> tuple[Tensor, Tensor]:
    """``(abar'_i, abar'_{i-1}) = (abar_{S_i}, abar_{S_{i-1}})`` with abar_{S_{-1}} = 1: the cumulative
    products of the chain on the sub-sequence S (float64, CPU), what every respaced sampler steps with."""
    abar = cpu64(diffusion.alphas_cumprod)[list(timesteps)]
    return abar, torch.cat([torch.ones(1, dtype=torch.float64, device="cpu"), abar[:-1]])


def respaced_betas(diffusion: GaussianDiffusion, timesteps: Sequence[int]) -> Tensor:
    """beta'_i = 1 - abar_{S_i} / abar_{S_{i-1}} (float64); the original beta where the gap is one step."""
    abar, abar_prev = chain_alphas_cumprod(diffusion, timesteps)
    timesteps = list(timesteps)
    one_step = torch.tensor([t == prev + 1 for prev, t in zip([-1, *timesteps[:-1]], timesteps)])
    return torch.where(one_step, cpu64(diffusion.betas)[timesteps], 1.0 - abar / abar_prev)


class RespacedModel:
    """Calls ``model(x_t, S_i, **cond)`` for respaced index ``i`` (the conditioning passed through).

    A mu-predicting network predicts the mean of the ORIGINAL one-step posterior, which is not the
    mean of the respaced one; its output is turned into the x_0 it implies (with the original
    coefficients), and the spaced diffusion is built with ``mean_type="x0"``. eps and x_0 need no
    conversion. The variance half of a learned-variance output is passed through unchanged (improved
    DDPM interpolates it between the respaced beta'_i and posterior variance).
    """

    def __init__(self, model: Model, timestep_map: Tensor, base: GaussianDiffusion, mu_to_x0: bool) -> None:
        self.model = model
        self.timestep_map = timestep_map
        self.base = base
        self.mu_to_x0 = mu_to_x0

    def __call__(self, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        t_orig = self.timestep_map.to(t.device)[t]
        out = self.model(x_t, t_orig, **cond)
        if not self.mu_to_x0:
            return out
        mean_part, var_part = self.base.split_output(out)
        x0 = self.base.x0_from_mean(x_t, t_orig, mean_part)
        return x0 if var_part is None else torch.cat([x0, var_part], dim=1)


class SpacedDiffusion(GaussianDiffusion):
    """A GaussianDiffusion on the sub-sequence ``timesteps`` of ``base``'s steps (same var_type).

    ``timestep_map[i]`` is the original index of respaced step ``i``.
    """

    def __init__(self, base: GaussianDiffusion, timesteps: Sequence[int]) -> None:
        timesteps = check_timesteps(timesteps, base.num_timesteps)
        identity = timesteps == list(range(base.num_timesteps))
        if base.var_type == "learned" and not identity:
            raise ConfigError(
                "a var_type=learned network predicts the log-variance of single original steps, which "
                "does not carry over to a respaced chain: sample it with all steps, DDIM or DPM-Solver++"
            )
        mu_to_x0 = base.mean_type == "mu" and not identity
        super().__init__(
            mean_type="x0" if mu_to_x0 else base.mean_type,
            var_type=base.var_type,
            betas=respaced_betas(base, timesteps),
        )
        self.schedule = f"{base.schedule}[respaced {len(timesteps)}/{base.num_timesteps}]"
        self.register_buffer(
            "timestep_map", torch.tensor(timesteps, dtype=torch.long, device="cpu"), persistent=False
        )
        self.original_num_timesteps = base.num_timesteps
        self._base = (base,)  # a tuple: not registered as a submodule
        self._mu_to_x0 = mu_to_x0

    @property
    def base(self) -> GaussianDiffusion:
        return self._base[0]

    @property
    def timesteps(self) -> list[int]:
        return self.timestep_map.tolist()

    def wrap_model(self, model: Model) -> RespacedModel:
        """``model`` on respaced indices (mapped to original ones, mu to x_0; ``**cond`` passed on)."""
        return RespacedModel(model, self.timestep_map, self.base, self._mu_to_x0)


__all__ = ["RespacedModel", "SpacedDiffusion", "chain_alphas_cumprod", "respaced_betas"]
