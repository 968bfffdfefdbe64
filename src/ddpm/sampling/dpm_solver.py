"""DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models", arXiv:2211.01095), for the discrete-time DDPM.

The probability-flow ODE in data-prediction form is solved in lambda_t = log(alpha_t / sigma_t)
(alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t)) with the exact solution of its linear part
(the paper's Sec. 4, exact solutions with data prediction):

    x_t = (sigma_t / sigma_s) x_s + sigma_t * int_{lambda_s}^{lambda_t} e^{lambda} x0_theta(x_lambda) dlambda.

With h = lambda_t - lambda_s and the data predictions D_k = x0_theta(x_{t_k}, t_k) at earlier steps:

- order 1 (= DDIM, eta 0):  x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D_0
- 2M (Algorithm 2):          D = D_0 + (1 / (2 r0)) (D_0 - D_1),  r0 = h_prev / h, same update with D
- 3M (diffusers' third-order multistep update, from DPM-Solver's eq. for order 3):
      D1_0 = (D_0 - D_1) / r0, D1_1 = (D_1 - D_2) / r1, D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1),
      D2 = (D1_0 - D1_1) / (r0 + r1),
      x_t = (sigma_t/sigma_s) x_s - alpha_t (e^{-h} - 1) D_0 + alpha_t ((e^{-h} - 1)/h + 1) D1
            - alpha_t ((e^{-h} - 1 + h)/h^2 - 1/2) D2

The network is only ever evaluated at integer timesteps: the spacings (``logsnr`` uniform in
lambda, ``uniform`` in time, ``quadratic``) are rounded to the discrete grid and lambda is taken
exactly at the chosen indices, so rounding changes the grid but not the accuracy of each step.
The chain runs from t = T-1 down to t = 0 and then outputs D at t = 0 (a first-order step to
sigma = 0, as diffusers' ``final_sigmas_type="zero"``). The first steps use lower orders (not enough
history yet) and, with ``lower_order_final`` and fewer than 15 steps, so do the last ones
(order <= number of steps left, counting the final one). 3M additionally falls back to second order
on steps longer than ``max_third_order_step`` in lambda, which keeps it at least as accurate as 2M
at 5-10 steps (see ``benchmarks/sampler_quality.py``).
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
from ddpm.sampling.respace import chain_alphas_cumprod
from ddpm.sampling.spacing import chain_timesteps


class DPMSolverPPSampler(ChainSampler):
    """DPM-Solver++(2M) / (3M): deterministic multistep data-prediction solver, ``steps`` NFEs.

    Args:
        diffusion: the diffusion the network was trained with.
        steps: network evaluations (10-20 suffice; ``None``: all T).
        order: 1 (DDIM), 2 (2M, the usual choice) or 3 (3M).
        spacing: ``logsnr`` (default), ``uniform`` (time-uniform) or ``quadratic`` (time-quadratic).
        timesteps: explicit increasing original indices (overrides ``steps``/``spacing``).
        clip_denoised: clip the data prediction to [-1, 1] (static thresholding; DPM-Solver++ Sec. 5).
        lower_order_final: use lower orders for the final steps when ``steps < 15``.
        max_third_order_step: 3M takes a second-order step wherever the step in lambda exceeds this.
            Our robustness guard, not part of the paper: on the oracle Gaussian with the linear schedule,
            third-order extrapolation over steps h > 1 (fewer than ~12 logSNR-uniform steps) is 10-100x
            less accurate than 2M, while at h <= 1 3M is as good or better.
    """

    label = "DPM-Solver++"

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        steps: int | None = 20,
        order: int = 2,
        spacing: str = "logsnr",
        timesteps: Sequence[int] | None = None,
        clip_denoised: bool = True,
        lower_order_final: bool = True,
        max_third_order_step: float = 1.0,
    ) -> None:
        if order not in (1, 2, 3):
            raise ConfigError(f"DPM-Solver++ order={order} is not supported: use 1, 2 (2M) or 3 (3M)")
        self.diffusion = diffusion
        self.order = int(order)
        self.clip_denoised = clip_denoised
        self.lower_order_final = lower_order_final
        self.max_third_order_step = float(max_third_order_step)
        self.timesteps = chain_timesteps(diffusion, steps, spacing, timesteps)
        abar, _ = chain_alphas_cumprod(diffusion, self.timesteps)
        self._alpha = abar.sqrt()
        self._sigma = (1 - abar).sqrt()
        self._lambda = cpu64(diffusion.log_snr)[self.timesteps]

    @property
    def num_steps(self) -> int:
        """Network evaluations per image."""
        return len(self.timesteps)

    def _update(
        self, x: Tensor, i_s: int, i_t: int, history: list[Tensor], lambdas: list[float], *, order: int
    ) -> Tensor:
        """One multistep update from chain index i_s to i_t (< i_s); history[-1] is D at i_s."""
        lam_s, lam_t = float(self._lambda[i_s]), float(self._lambda[i_t])
        h = lam_t - lam_s
        alpha_t = float(self._alpha[i_t])
        ratio = float(self._sigma[i_t] / self._sigma[i_s])
        phi1 = math.expm1(-h)  # e^{-h} - 1
        d0 = history[-1]
        if order == 1:
            return ratio * x - alpha_t * phi1 * d0
        r0 = (lam_s - lambdas[-2]) / h
        if order == 2:
            d1 = (d0 - history[-2]) / r0
            return ratio * x - alpha_t * phi1 * (d0 + 0.5 * d1)
        r1 = (lambdas[-2] - lambdas[-3]) / h
        d1_0 = (d0 - history[-2]) / r0
        d1_1 = (history[-2] - history[-3]) / r1
        d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        phi2 = phi1 / h + 1.0
        phi3 = (phi1 + h) / h**2 - 0.5
        return ratio * x - alpha_t * phi1 * d0 + alpha_t * phi2 * d1 - alpha_t * phi3 * d2

    def chain(
        self, model: Model, x_t: Tensor, start: int, noise: NoiseSource | None, cond: Cond | None
    ) -> Iterator[tuple[int, Tensor, Tensor]]:
        """The multistep updates from chain position ``start`` down to x_0 = D(x_{t_0}, t_0).

        The solver is deterministic: ``noise`` is accepted for a uniform interface and not used.
        """
        x = x_t
        history: list[Tensor] = []
        lambdas: list[float] = []
        for k, i in enumerate(range(start, -1, -1)):
            d, _ = self.predict(model, x, self.timesteps[i], cond=cond)  # D = x0_theta(x_t, t)
            history = [*history[-2:], d]
            lambdas = [*lambdas[-2:], float(self._lambda[i])]
            # the last step goes to sigma = 0: x_0 = D(x_{t_0}, t_0)
            x = d if i == 0 else self._update(x, i, i - 1, history, lambdas, order=self.step_order(k, start))
            yield i, x, d

    def step_order(self, k: int, start: int | None = None) -> int:
        """Order of transition k (0 = the first) of a chain starting at chain index ``start``.

        A chain from index ``start`` has ``start`` transitions, then the final step to sigma = 0 (first
        order). Warm-up: at most k + 1 (the history available). With ``lower_order_final`` and fewer than
        15 evaluations, at most the number of steps left including the final one (so the transition to
        t = 0 is at most second order), as in diffusers' ``lower_order_final``. Third order is only used
        for steps h <= ``max_third_order_step`` in lambda (see the class docstring).
        """
        start = len(self.timesteps) - 1 if start is None else start
        order = min(self.order, k + 1)
        if self.lower_order_final and start + 1 < 15:
            order = min(order, start - k + 1)
        i = start - k
        if order == 3 and float(self._lambda[i - 1] - self._lambda[i]) > self.max_third_order_step:
            order = 2
        return max(order, 1)


__all__ = ["DPMSolverPPSampler"]
