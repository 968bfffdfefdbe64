"""Noise schedules beta_1..beta_T, always computed in float64.

- ``linear``: the DDPM paper's schedule (Sec. 4: beta_1 = 1e-4 to beta_T = 0.02, T = 1000).
- ``quadratic``: linear in sqrt(beta) (the official code's "quad" schedule).
- ``cosine``: improved DDPM (Nichol & Dhariwal 2021, eq. 17), alpha_bar(t) = cos^2(((t/T)+s)/(1+s) * pi/2)
  with s = 0.008 and betas clipped at 0.999.
"""

from __future__ import annotations

import math

import torch

from ddpm.errors import ConfigError

SCHEDULES = ("linear", "quadratic", "cosine")


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """The paper's linear schedule."""
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64, device="cpu")


def quadratic_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Betas whose square roots are linear between sqrt(beta_start) and sqrt(beta_end)."""
    return (
        torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64, device="cpu") ** 2
    )


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Improved DDPM's cosine schedule: beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1), clipped."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64, device="cpu")
    alpha_bar = torch.cos((steps / num_timesteps + s) / (1 + s) * math.pi / 2) ** 2
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta)


def make_betas(
    schedule: str = "linear",
    num_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
) -> torch.Tensor:
    """Betas (float64, shape [T]) of the named schedule."""
    if num_timesteps < 1:
        raise ConfigError(f"num_timesteps must be >= 1, got {num_timesteps}")
    if schedule == "linear":
        betas = linear_betas(num_timesteps, beta_start, beta_end)
    elif schedule == "quadratic":
        betas = quadratic_betas(num_timesteps, beta_start, beta_end)
    elif schedule == "cosine":
        betas = cosine_betas(num_timesteps)
    else:
        raise ConfigError(f"unknown beta schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
    if not bool(((betas > 0) & (betas < 1)).all()):
        raise ConfigError(f"betas of schedule {schedule!r} must lie in (0, 1); check beta_start/beta_end")
    return betas
