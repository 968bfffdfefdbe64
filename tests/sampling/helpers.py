"""Small models for sampler tests: a nonlinear conv net and eps/x0/mu versions of the Gaussian oracle."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ddpm.diffusion import GaussianDiffusion
from ddpm.testing.oracle import GaussianOracle


class TinyNet(nn.Module):
    """A small nonlinear ``model(x_t, t)`` (random weights) with a time input; out_channels = factor * C."""

    def __init__(self, channels: int = 1, factor: int = 1, hidden: int = 8, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, channels * factor, 3, padding=1)
        self.temb = nn.Linear(1, hidden)
        self.seen_t: list[list[int]] = []

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        self.seen_t.append(t.tolist())
        emb = self.temb((t.float() / 1000.0).unsqueeze(1))[:, :, None, None]
        return self.conv2(torch.tanh(self.conv1(x) + emb))


def oracle_as(kind: str, oracle: GaussianOracle, diffusion: GaussianDiffusion):
    """The oracle predicting eps, x0 or the posterior mean mu (for a diffusion of that mean_type)."""

    def model(x_t: Tensor, t: Tensor) -> Tensor:
        eps = oracle(x_t, t)
        if kind == "eps":
            return eps
        x0 = diffusion.x0_from_eps(x_t, t, eps)
        if kind == "x0":
            return x0
        mean, _, _ = diffusion.q_posterior(x0, x_t, t)
        return mean

    return model


def make_oracle(
    diffusion: GaussianDiffusion, shape=(1, 4, 4), std=(0.1, 0.3), seed: int = 0, evenly: bool = False
) -> GaussianOracle:
    """The oracle of a diagonal Gaussian: means uniform in [-0.5, 0.5), per-dimension stds drawn uniformly
    from ``std`` (``evenly``: spread evenly over it, in a random order)."""
    g = torch.Generator().manual_seed(seed)
    n = int(torch.tensor(shape).prod())
    mean = (torch.rand(n, generator=g) - 0.5).view(shape)
    if evenly:
        stds = torch.linspace(*std, n)[torch.randperm(n, generator=g)].view(shape)
    else:
        stds = torch.empty(n).uniform_(*std, generator=g).view(shape)
    return GaussianOracle(diffusion, mean, stds)
