"""Sub-sequences of timesteps for fast samplers.

Every spacing returns ``steps`` distinct ORIGINAL timestep indices in increasing order, a subset of
``0..T-1``; the samplers walk them from the last (noisiest) to the first.

- ``uniform``: improved DDPM's ``space_timesteps`` with one section (Nichol & Dhariwal 2021,
  Sec. 4): ``round(i (T-1) / (steps-1))``, so both 0 and T-1 are included. DPM-Solver's
  ``time_uniform``.
- ``leading``: the DDIM paper's "uniform" skip (Song et al. 2021, App. D.2): ``0, k, 2k, ...``
  with ``k = T // steps`` (does not reach T-1).
- ``quadratic``: quadratic in t, denser near the data (DDIM's "quadratic", DPM-Solver's
  ``time_quadratic``), here spanning the whole range ``[0, T-1]`` (the DDIM paper stops at 0.8 T).
- ``logsnr``: uniform in lambda_t = log(alpha_t / sigma_t) = 0.5 log(abar_t / (1 - abar_t))
  between lambda_{T-1} and lambda_0, rounded to the nearest discrete timestep (DPM-Solver's
  ``logSNR``; Lu et al. 2022, Sec. 3.3).
- ``karras`` (:func:`karras_timesteps`, the Heun sampler's): EDM's eq. 5 puts N levels at
  (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, each rounded to the
  timestep of the nearest discrete sigma_t = sqrt((1 - abar_t) / abar_t) (Karras et al. 2022).

Rounding can make neighbouring indices collide (e.g. logSNR near t=0); collisions are resolved by
moving indices apart by one, so exactly ``steps`` distinct indices are always returned.
:func:`chain_timesteps` is the one way a sampler picks its chain: explicit ``timesteps`` or a spacing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError

SPACINGS: tuple[str, ...] = ("uniform", "leading", "quadratic", "logsnr")


def _strictly_increasing(values: Sequence[float], num_timesteps: int) -> list[int]:
    """Round to integers in [0, T-1] and push collisions apart so the result is strictly increasing."""
    ts = [min(max(round(v), 0), num_timesteps - 1) for v in values]
    for i in range(1, len(ts)):  # from the bottom: at least one apart
        ts[i] = max(ts[i], ts[i - 1] + 1)
    top = num_timesteps - 1
    for i in range(len(ts) - 1, -1, -1):  # from the top: stay below T and below the next one
        ts[i] = min(ts[i], top)
        top = ts[i] - 1
    return ts


def make_timesteps(
    num_timesteps: int, steps: int | None, spacing: str = "uniform", *, log_snr: Tensor | None = None
) -> list[int]:
    """``steps`` increasing original timestep indices in ``[0, T)`` spaced as ``spacing``.

    ``steps=None`` or ``steps == T`` gives the full chain ``0..T-1`` for every spacing.
    ``logsnr`` needs the schedule's lambda_t (:attr:`GaussianDiffusion.log_snr`).
    """
    if steps is None or steps == num_timesteps:
        return list(range(num_timesteps))
    steps = int(steps)
    if not 1 <= steps <= num_timesteps:
        raise ConfigError(
            f"steps={steps} is not in [1, {num_timesteps}]: choose at most as many steps as the "
            "diffusion has timesteps"
        )
    if spacing not in SPACINGS:
        raise ConfigError(f"unknown timestep spacing {spacing!r}: choose one of {', '.join(SPACINGS)}")
    last = num_timesteps - 1
    if steps == 1:
        return [last]
    if spacing == "uniform":
        values = [i * last / (steps - 1) for i in range(steps)]
    elif spacing == "leading":
        stride = num_timesteps // steps
        values = [i * stride for i in range(steps)]
    elif spacing == "quadratic":
        values = [(i / (steps - 1)) ** 2 * last for i in range(steps)]
    else:
        if log_snr is None:
            raise ConfigError("spacing='logsnr' needs the schedule's log_snr")
        lam = log_snr.detach().cpu().to(torch.float64)  # decreasing in t
        targets = torch.linspace(
            float(lam[last]), float(lam[0]), steps, dtype=torch.float64, device=lam.device
        )
        # lambda is decreasing: search in the increasing sequence -lambda, then pick the nearer index.
        neg = (-lam).contiguous()
        idx = torch.searchsorted(neg, (-targets).contiguous()).clamp(1, last)
        lo, hi = idx - 1, idx
        nearer_lo = (lam[lo] - targets).abs() <= (lam[hi] - targets).abs()
        values = torch.where(nearer_lo, lo, hi).sort().values.tolist()
    return _strictly_increasing(values, num_timesteps)


def check_timesteps(timesteps: Sequence[int], num_timesteps: int) -> list[int]:
    """Validate an explicit sub-sequence: distinct, increasing, within [0, T)."""
    ts = [int(t) for t in timesteps]
    if not ts:
        raise ConfigError("timesteps is empty: give at least one timestep index")
    if any(b <= a for a, b in itertools.pairwise(ts)):
        raise ConfigError(f"timesteps must be strictly increasing, got {ts[:8]}...")
    if ts[0] < 0 or ts[-1] >= num_timesteps:
        raise ConfigError(f"timesteps must lie in [0, {num_timesteps}), got {ts[0]}..{ts[-1]}")
    return ts


def nearest_timestep(sigmas: Tensor, sigma: float) -> int:
    """The timestep whose sigma is nearest to ``sigma`` (EDM's ``iDDPMPrecond.round_sigma``)."""
    return int((sigmas - float(sigma)).abs().argmin())


def karras_timesteps(
    sigmas: Tensor,
    steps: int,
    rho: float = 7.0,
    sigma_range: tuple[float | None, float | None] = (None, None),
) -> list[int]:
    """``steps`` increasing timesteps at EDM's sigma levels (eq. 5), rounded to the nearest discrete sigmas.

    ``sigmas`` are the model's sigma_t (:attr:`GaussianDiffusion.sigmas`); ``sigma_range`` =
    (sigma_min, sigma_max), each ``None`` for the model's extreme and clamped to the model's range
    otherwise (EDM's ``edm_sampler``).
    """
    num_timesteps = int(sigmas.shape[0])
    if not 1 <= int(steps) <= num_timesteps:
        raise ConfigError(f"Heun steps={steps} is not in [1, {num_timesteps}]: choose 1 to T sigma levels")
    if not float(rho) > 0:
        raise ConfigError(f"Heun rho={rho} must be > 0 (EDM uses 7)")
    lo, hi = float(sigmas[0]), float(sigmas[-1])
    s_min = lo if sigma_range[0] is None else min(max(float(sigma_range[0]), lo), hi)
    s_max = hi if sigma_range[1] is None else min(max(float(sigma_range[1]), lo), hi)
    if not s_min < s_max:
        raise ConfigError(f"Heun sigma_min={s_min:g} must be below sigma_max={s_max:g}")
    steps = int(steps)
    if steps == 1:
        return [nearest_timestep(sigmas, s_max)]
    a, b = s_max ** (1.0 / rho), s_min ** (1.0 / rho)
    levels = [(a + i / (steps - 1) * (b - a)) ** rho for i in range(steps)]
    return _strictly_increasing(sorted(nearest_timestep(sigmas, s) for s in levels), num_timesteps)


def chain_timesteps(
    diffusion: GaussianDiffusion,
    steps: int | None = None,
    spacing: str = "uniform",
    timesteps: Sequence[int] | None = None,
) -> list[int]:
    """A sampler's chain on ``diffusion``: the explicit ``timesteps`` if given (checked), else
    ``make_timesteps(T, steps, spacing)``."""
    if timesteps is not None:
        return check_timesteps(timesteps, diffusion.num_timesteps)
    return make_timesteps(diffusion.num_timesteps, steps, spacing, log_snr=diffusion.log_snr)


__all__ = [
    "SPACINGS",
    "chain_timesteps",
    "check_timesteps",
    "karras_timesteps",
    "make_timesteps",
    "nearest_timestep",
]
