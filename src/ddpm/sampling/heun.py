"""EDM's second-order Heun sampler (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", Algorithms 1 and 2) driving a discrete-time DDPM network.

EDM writes the forward process as x = y + sigma n (y ~ data, n ~ N(0, I)) and solves the probability-flow
ODE dx/dsigma = (x - D(x; sigma)) / sigma with Heun's method. A DDPM state x_t = sqrt(abar_t) y +
sqrt(1 - abar_t) n is that x scaled by sqrt(abar_t):

    sigma_t = sqrt((1 - abar_t) / abar_t),  x_edm = x_t / sqrt(abar_t),  D(x_edm; sigma_t) = x0_theta(x_t, t):

the data prediction of the network at x_t = x_edm / sqrt(1 + sigma_t^2) (eps, x_0, v or mu predictions go
through :meth:`GaussianDiffusion.predict_x0_eps`; a learned variance half is ignored; sigma_t is
:attr:`GaussianDiffusion.sigmas`). The network only
knows its T discrete sigmas, so every sigma the sampler evaluates is rounded to the nearest of them
(smallest |sigma - sigma_t|), as EDM's ``iDDPMPrecond.round_sigma`` does: the step sigmas and the churned
sigma_hat are grid points and D is evaluated exactly where it was trained. The ODE is then solved between
those grid sigmas as EDM solves it between its rounded ``t_steps``.

Step sigmas (``spacing``): ``karras`` (EDM eq. 5, :func:`ddpm.sampling.spacing.karras_timesteps`) puts N
levels at (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, rho = 7, between
EDM's sigma_max = 80 and sigma_min = 0.002 clamped to the model's largest and smallest sigma (as EDM's
``edm_sampler`` clamps them to the network's; ``None`` takes the model's own),
rounded to the grid; collisions are pushed apart so the N levels are distinct. The DDPM spacings of
:mod:`ddpm.sampling.spacing` (``uniform``, ``quadratic``, ``logsnr``, ``leading``) work as well.

Each level i = N-1 .. 0 (sigma_N := 0 after the last one):

    gamma_i = min(S_churn / N, sqrt(2) - 1) if S_tmin <= sigma_i <= S_tmax else 0          (Algorithm 2)
    sigma_hat = round(sigma_i (1 + gamma_i)),  x_hat = x_i + sqrt(sigma_hat^2 - sigma_i^2) S_noise z
    d = (x_hat - D(x_hat; sigma_hat)) / sigma_hat,  x_next = x_hat + (sigma_next - sigma_hat) d     (Euler)
    if sigma_next > 0: d' = (x_next - D(x_next; sigma_next)) / sigma_next,
                       x_next = x_hat + (sigma_next - sigma_hat) (d + d') / 2                       (Heun)

so N levels cost 2N - 1 network calls (the last step to sigma = 0 is Euler: x_0 = D(x; sigma_0)). With
S_churn = 0 (the default) this is the deterministic Algorithm 1. The chain starts from x_T ~ N(0, I) at the
top level like every other sampler (x_edm = x_t / sqrt(abar_t) at the top level t, variance 1 + sigma_t^2).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from torch import Tensor

from ddpm.diffusion.denoiser import Cond, Model
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling.base import ChainSampler, cpu64
from ddpm.sampling.noise import NoiseSource
from ddpm.sampling.spacing import SPACINGS, chain_timesteps, karras_timesteps, nearest_timestep

HEUN_SPACINGS: tuple[str, ...] = ("karras", *SPACINGS)
# EDM's sampling range (edm_sampler: sigma_min=0.002, sigma_max=80), clamped to the network's sigmas
EDM_SIGMA_MIN, EDM_SIGMA_MAX = 0.002, 80.0


class HeunSampler(ChainSampler):
    """EDM's Heun sampler (Algorithm 1; Algorithm 2 with ``s_churn > 0``) on ``steps`` sigma levels.

    Args:
        diffusion: the diffusion the network was trained with (T, betas, mean_type).
        steps: N, the number of sigma levels; 2N - 1 network calls (EDM's ``num_steps``).
        spacing: ``karras`` (EDM's rho-spaced sigmas) or a DDPM spacing (``uniform``, ``logsnr``, ...).
        rho: EDM's rho (7) for ``karras``.
        timesteps: explicit increasing original indices (overrides ``steps``/``spacing``).
        clip_denoised: clip D to [-1, 1] like the other samplers (EDM does not clip).
        s_churn, s_tmin, s_tmax, s_noise: Algorithm 2's stochasticity (``s_tmax=None``: no upper bound);
            ``s_churn=0`` is deterministic.
        sigma_min, sigma_max: the ``karras`` range, clamped to the model's sigmas: EDM's 0.002 and 80 by
            default (``None``: the model's smallest / largest sigma; the clipped last betas of a cosine
            schedule put the model's largest far above 80, where the levels would be wasted).
    """

    label = "Heun"

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        steps: int | None = 18,
        spacing: str = "karras",
        rho: float = 7.0,
        timesteps: Sequence[int] | None = None,
        clip_denoised: bool = True,
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float | None = None,
        s_noise: float = 1.0,
        sigma_min: float | None = EDM_SIGMA_MIN,
        sigma_max: float | None = EDM_SIGMA_MAX,
    ) -> None:
        if spacing not in HEUN_SPACINGS:
            raise ConfigError(f"unknown Heun spacing {spacing!r}: choose one of {', '.join(HEUN_SPACINGS)}")
        if float(s_churn) < 0 or float(s_noise) < 0:
            raise ConfigError(f"Heun s_churn={s_churn} and s_noise={s_noise} must be >= 0")
        self.diffusion = diffusion
        self.clip_denoised = clip_denoised
        self.sigmas = cpu64(diffusion.sigmas)  # sigma_t of every timestep, increasing in t
        self._sqrt_abar = cpu64(diffusion.sqrt_alphas_cumprod)
        if spacing == "karras" and timesteps is None:
            steps = diffusion.num_timesteps if steps is None else steps
            self.timesteps = karras_timesteps(self.sigmas, steps, rho, (sigma_min, sigma_max))
        else:
            self.timesteps = chain_timesteps(diffusion, steps, spacing, timesteps)
        self.s_churn, self.s_tmin, self.s_noise = float(s_churn), float(s_tmin), float(s_noise)
        self.s_tmax = math.inf if s_tmax is None else float(s_tmax)
        # the timestep of sigma_hat at every level (the level itself where there is no churn)
        self.churn_timesteps = [self._churned(t) for t in self.timesteps]

    def _churned(self, t: int) -> int:
        """The grid timestep of sigma_hat = sigma_t (1 + gamma) at level t (Algorithm 2, lines 4-6)."""
        sigma = float(self.sigmas[t])
        churned = self.s_tmin <= sigma <= self.s_tmax
        gamma = min(self.s_churn / len(self.timesteps), math.sqrt(2.0) - 1.0) if churned else 0.0
        return max(t, nearest_timestep(self.sigmas, sigma * (1.0 + gamma)))

    @property
    def num_steps(self) -> int:
        """Network evaluations per image: two per level, one at the last (2N - 1)."""
        return 2 * len(self.timesteps) - 1

    def denoise(self, model: Model, x: Tensor, t: int, cond: Cond | None) -> Tensor:
        """D(x; sigma_t): the network's x_0 prediction at x_t = sqrt(abar_t) x (``clip_denoised`` clips)."""
        x0_hat, _ = self.predict(model, x * float(self._sqrt_abar[t]), t, cond=cond)
        return x0_hat.to(x.dtype)

    def step(
        self, model: Model, x: Tensor, i: int, noise: NoiseSource | None, cond: Cond | None
    ) -> tuple[Tensor, Tensor]:
        """From level i (EDM scale x) to level i - 1 (sigma = 0 after i = 0): ``(x_next, D(x_hat))``."""
        t, t_hat = self.timesteps[i], self.churn_timesteps[i]
        sigma, sigma_hat = float(self.sigmas[t]), float(self.sigmas[t_hat])
        if t_hat != t:
            if noise is None:
                raise ConfigError("the Heun sampler with s_churn > 0 needs a noise source")
            z = noise.randn(x.shape[1:], x.device, x.dtype)
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * self.s_noise * z
        denoised = self.denoise(model, x, t_hat, cond)
        sigma_next = float(self.sigmas[self.timesteps[i - 1]]) if i > 0 else 0.0
        d = (x - denoised) / sigma_hat
        x_next = x + (sigma_next - sigma_hat) * d
        if i > 0:
            d_prime = (x_next - self.denoise(model, x_next, self.timesteps[i - 1], cond)) / sigma_next
            x_next = x + (sigma_next - sigma_hat) * (0.5 * d + 0.5 * d_prime)
        return x_next, denoised

    def chain(
        self, model: Model, x_t: Tensor, start: int, noise: NoiseSource | None, cond: Cond | None
    ) -> Iterator[tuple[int, Tensor, Tensor]]:
        """The Heun steps from level ``start`` down to sigma = 0, in EDM's scale x = x_t / sqrt(abar_t)
        (:meth:`state` scales back); ``noise`` may be None without churn."""
        x = x_t / float(self._sqrt_abar[self.timesteps[start]])
        for i in range(start, -1, -1):
            x, denoised = self.step(model, x, i, noise, cond)
            yield i, x, denoised

    def state(self, x: Tensor, i: int) -> Tensor:
        """x_t = sqrt(abar_t) x of the EDM-scale state after level ``i`` (at level i - 1; x_0 after 0)."""
        return x * (float(self._sqrt_abar[self.timesteps[i - 1]]) if i > 0 else 1.0)


__all__ = ["HEUN_SPACINGS", "HeunSampler"]
