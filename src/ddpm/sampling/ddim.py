"""DDIM sampling (Song, Meng, Ermon 2021, "Denoising Diffusion Implicit Models").

On a sub-sequence S_0 < ... < S_{K-1} of the original timesteps, each step from t = S_i to
s = S_{i-1} (abar_s = 1 after the last step) is DDIM's eq. (12):

    x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z,

    sigma = eta * sqrt((1 - abar_s) / (1 - abar_t)) * sqrt(1 - abar_t / abar_s)        (eq. 16)

with x0_hat, eps_hat the network's predictions at (x_t, t) (eps_hat recomputed from the clipped x0_hat
when ``clip_denoised``). ``eta = 0`` is the deterministic DDIM (a discretisation of the probability-flow
ODE); ``eta = 1`` is the DDPM ancestral step with the posterior variance of the respaced chain
(fixed-small). Works with any ``mean_type`` (eps, x0, mu, v: each is read as (x0_hat, eps_hat) by
:meth:`GaussianDiffusion.predict_x0_eps`) and ignores a learned variance.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from ddpm.diffusion.denoiser import Cond, Model
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling.base import ChainSampler
from ddpm.sampling.noise import NoiseSource
from ddpm.sampling.respace import chain_alphas_cumprod
from ddpm.sampling.spacing import chain_timesteps
from ddpm.utils.progress import progress_bar


class DDIMSampler(ChainSampler):
    """DDIM with ``eta`` in [0, 1] on ``steps`` timesteps spaced as ``spacing`` (or explicit ``timesteps``).

    Args:
        diffusion: the diffusion the network was trained with (T, betas, mean_type).
        steps: number of network evaluations (``None``: all T).
        eta: 0 = deterministic, 1 = ancestral-style noise (eq. 16).
        spacing: ``uniform`` | ``quadratic`` | ``leading`` | ``logsnr`` (see :mod:`ddpm.sampling.spacing`).
        timesteps: explicit increasing original indices (overrides ``steps``/``spacing``).
        clip_denoised: clip x0_hat to [-1, 1] (as the DDPM sampler does).
    """

    label = "DDIM"

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        steps: int | None = 50,
        eta: float = 0.0,
        spacing: str = "uniform",
        timesteps: Sequence[int] | None = None,
        clip_denoised: bool = True,
    ) -> None:
        if not 0.0 <= float(eta) <= 1.0:
            raise ConfigError(f"DDIM eta={eta} is outside [0, 1]: use 0 (deterministic) to 1 (DDPM-like)")
        self.diffusion = diffusion
        self.eta = float(eta)
        self.clip_denoised = clip_denoised
        self.timesteps = chain_timesteps(diffusion, steps, spacing, timesteps)
        # abar of the state before and after each step: abar_{S_i}, abar_{S_{i-1}} (1, the data, at the end)
        self._abar, self._abar_prev = chain_alphas_cumprod(diffusion, self.timesteps)

    @property
    def num_steps(self) -> int:
        """Network evaluations per image."""
        return len(self.timesteps)

    def step_coefficients(self, i: int, eta: float | None = None) -> tuple[float, float, float]:
        """(sqrt(abar_s), sqrt(1 - abar_s - sigma^2), sigma) of the step from S_i to S_{i-1} (eqs. 12, 16)."""
        eta = self.eta if eta is None else eta
        abar_t, abar_s = self._abar[i], self._abar_prev[i]
        sigma = eta * ((1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s)).clamp(min=0).sqrt()
        dir_coef = (1 - abar_s - sigma**2).clamp(min=0).sqrt()
        return float(abar_s.sqrt()), float(dir_coef), float(sigma)

    def chain(
        self, model: Model, x_t: Tensor, start: int, noise: NoiseSource | None, cond: Cond | None
    ) -> Iterator[tuple[int, Tensor, Tensor]]:
        """The steps of eq. 12 from chain position ``start`` to x_0 (``noise``: None will do for eta = 0)."""
        if self.eta > 0 and noise is None:
            raise ConfigError("DDIM with eta > 0 needs a noise source")
        x = x_t
        for i in range(start, -1, -1):
            x0_hat, eps_hat = self.predict(model, x, self.timesteps[i], cond=cond)
            a_s, dir_coef, sigma = self.step_coefficients(i)
            x = a_s * x0_hat + dir_coef * eps_hat
            if sigma > 0 and i > 0:
                x = x + sigma * noise.randn(x.shape[1:], x.device, x.dtype)
            yield i, x, x0_hat

    @torch.no_grad()
    def encode(
        self,
        model: Model,
        x0: Tensor,
        t_end: int | None = None,
        progress: bool = False,
        *,
        cond: Cond | None = None,
    ) -> Tensor:
        """Deterministic DDIM inversion: run the eta=0 ODE forwards from data x0 to x_{t_end}.

        Each step from S_i to S_{i+1} uses the network at (x_{S_i}, S_i), the mirror image of the
        decoding step; the first step from the data (abar = 1) to S_0 uses x0_hat = x0 and eps_hat from
        the network at (sqrt(abar_{S_0}) x0, S_0). Encoding and decoding with the same sub-sequence
        invert each other up to the discretisation error, which vanishes as the number of steps grows
        (DDIM Sec. 5.4). ``t_end`` (default: the last timestep) must be on the chain. No clipping.
        """
        end = self.chain_index(self.timesteps[-1] if t_end is None else int(t_end))
        abar = self._abar
        a0 = float(abar[0].sqrt())
        _, eps_hat = self.predict(model, a0 * x0, self.timesteps[0], cond=cond, clip=False)
        x = a0 * x0 + float((1 - abar[0]).sqrt()) * eps_hat
        for i in progress_bar(range(end), enabled=progress, description="DDIM encode", total=end):
            x0_hat, eps_hat = self.predict(model, x, self.timesteps[i], cond=cond, clip=False)
            x = float(abar[i + 1].sqrt()) * x0_hat + float((1 - abar[i + 1]).sqrt()) * eps_hat
        return x


__all__ = ["DDIMSampler"]
