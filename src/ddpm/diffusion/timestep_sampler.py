"""Distributions over training timesteps: uniform (the paper) and improved DDPM's importance sampling.

Improved DDPM (Nichol & Dhariwal 2021, Sec. 3.3, eq. 18) reduces the variance of the L_vlb estimate by
sampling t with probability p_t proportional to sqrt(E[L_t^2]) (estimated from the last 10 values of
each term) and weighting each term by 1 / (T p_t), so that E_{t~p}[L_t / (T p_t)] = E_{t~U}[L_t]:
the estimate stays unbiased. Until every t has its 10 values, t is drawn uniformly.

The samplers are ``nn.Module`` s living inside a loss module: the history is registered as buffers,
so it is part of the LightningModule's ``state_dict`` and is saved in and restored from checkpoints.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ddpm.errors import ConfigError


def sample_timesteps(
    batch: int, num_timesteps: int, device: torch.device, generator: torch.Generator | None = None
) -> Tensor:
    """t ~ Uniform{0, ..., T-1} (the paper's Uniform{1, ..., T}, Algorithm 1), shape [batch], int64.

    The one uniform draw of the project: the losses and :class:`UniformTimestepSampler` use it.
    """
    return torch.randint(0, num_timesteps, (batch,), device=device, generator=generator)


class UniformTimestepSampler(nn.Module):
    """t ~ Uniform{0..T-1} with unit weights (the paper's choice)."""

    def __init__(self, num_timesteps: int) -> None:
        super().__init__()
        if num_timesteps < 1:
            raise ConfigError(f"num_timesteps must be >= 1, got {num_timesteps}")
        self.num_timesteps = int(num_timesteps)

    def probabilities(self) -> Tensor:
        return torch.full((self.num_timesteps,), 1.0 / self.num_timesteps, dtype=torch.float64, device="cpu")

    def sample(
        self, batch: int, device: torch.device, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(t [batch] int64, importance weights [batch] float32 = 1)."""
        t = sample_timesteps(batch, self.num_timesteps, device, generator)
        return t, torch.ones(batch, device=device)

    def update(self, t: Tensor, losses: Tensor) -> None:
        """Uniform sampling keeps no history."""

    def extra_repr(self) -> str:
        return f"T={self.num_timesteps}"


class LossAwareTimestepSampler(UniformTimestepSampler):
    """Improved DDPM's ``LossSecondMomentResampler``: p_t ∝ sqrt(mean of the last K values of L_t^2).

    Args:
        num_timesteps: T (must equal the diffusion's; in configs ``${diffusion.num_timesteps}``).
        history_per_term: K, values of L_t kept per t (10 in improved DDPM).
        uniform_prob: probability mass mixed in uniformly so every t keeps being visited (0.001).

    Buffers (saved in checkpoints): ``loss_history`` [T, K] float64, ``loss_counts`` [T] int64.
    Under DDP the per-example losses of all ranks are gathered before the update, so every rank keeps
    the same history and the same p_t.
    """

    def __init__(self, num_timesteps: int, history_per_term: int = 10, uniform_prob: float = 0.001) -> None:
        super().__init__(num_timesteps)
        if history_per_term < 1:
            raise ConfigError(f"history_per_term must be >= 1, got {history_per_term}")
        if not 0.0 <= uniform_prob <= 1.0:
            raise ConfigError(f"uniform_prob must lie in [0, 1], got {uniform_prob}")
        self.history_per_term = int(history_per_term)
        self.uniform_prob = float(uniform_prob)
        self.register_buffer(
            "loss_history", torch.zeros(num_timesteps, history_per_term, dtype=torch.float64)
        )
        self.register_buffer("loss_counts", torch.zeros(num_timesteps, dtype=torch.long))

    @property
    def warmed_up(self) -> bool:
        """Whether every t has its full history (until then t is drawn uniformly)."""
        return bool((self.loss_counts >= self.history_per_term).all())

    def probabilities(self) -> Tensor:
        """p_t (float64, sums to 1)."""
        if not self.warmed_up:
            return super().probabilities().to(self.loss_history.device)
        p = self.loss_history.pow(2).mean(dim=1).sqrt()
        total = p.sum()
        if not torch.isfinite(total) or total <= 0:
            return super().probabilities().to(self.loss_history.device)
        p = p / total
        return p * (1.0 - self.uniform_prob) + self.uniform_prob / self.num_timesteps

    def sample(
        self, batch: int, device: torch.device, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(t [batch] int64, weights 1 / (T p_t) [batch] float32)."""
        if not self.warmed_up:
            return super().sample(batch, device, generator)
        p = self.probabilities()
        if generator is not None:
            p = p.to(generator.device)
        t = torch.multinomial(p, batch, replacement=True, generator=generator)
        weights = 1.0 / (self.num_timesteps * p[t])
        return t.to(device), weights.to(device=device, dtype=torch.float32)

    @torch.no_grad()
    def update(self, t: Tensor, losses: Tensor) -> None:
        """Append the per-example losses L_t (one per t in the batch, all ranks) to the history."""
        t = t.detach().reshape(-1)
        losses = losses.detach().reshape(-1).to(torch.float64)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
            ls = [torch.empty_like(losses) for _ in range(dist.get_world_size())]
            dist.all_gather(ts, t)
            dist.all_gather(ls, losses)
            t, losses = torch.cat(ts), torch.cat(ls)
        history, counts, k = self.loss_history, self.loss_counts, self.history_per_term
        for ti, li in zip(t.cpu().tolist(), losses.cpu().tolist()):
            n = int(counts[ti])
            if n >= k:  # drop the oldest value
                history[ti, :-1] = history[ti, 1:].clone()
                history[ti, -1] = li
            else:
                history[ti, n] = li
            counts[ti] = n + 1

    def extra_repr(self) -> str:
        return (
            f"T={self.num_timesteps}, history_per_term={self.history_per_term}, "
            f"uniform_prob={self.uniform_prob}"
        )


__all__ = ["LossAwareTimestepSampler", "UniformTimestepSampler", "sample_timesteps"]
