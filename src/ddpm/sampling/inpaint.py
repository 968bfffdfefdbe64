"""Inpainting by replacement conditioning: the reverse chain with the known pixels kept in place.

After every ancestral step (Algorithm 2) the known pixels of x_{t-1} are replaced by a fresh draw from
q(x_{t-1} | x_0) = N(sqrt(abar_{t-1}) x_0, (1 - abar_{t-1}) I) (eq. 4) and, after the last step, by x_0
itself; the unknown pixels follow p_theta. This is the replacement approximation of sampling the model
prior times a delta on the known pixels (Sohl-Dickstein et al. 2015, Sec. 2.5; the imputation of Song
et al. 2021). :func:`ddpm.figures.inpaint` plots it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ddpm.diffusion.denoiser import Cond, Model
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling.ancestral import AncestralSampler
from ddpm.sampling.base import full_timestep
from ddpm.sampling.noise import PerSampleNoise
from ddpm.utils.rng import derive_seed, make_generator


def center_mask(shape: Sequence[int], fraction: float = 0.5) -> Tensor:
    """A [1, H, W] mask that is 1 (known) everywhere but a centred square of side ``fraction`` * size."""
    _, h, w = shape
    mask = torch.ones(1, h, w)
    dh, dw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - dh) // 2, (w - dw) // 2
    mask[:, top : top + dh, left : left + dw] = 0
    return mask


class ReplaceKnown:
    """The step hook ``hook(x, t_next)``: known pixels (``mask == 1``) from q(x_{t_next} | x_0), x_0 at -1.

    The fresh draws come from one CPU generator seeded from ``seed``, one [N, C, H, W] draw per step.
    """

    def __init__(self, diffusion: GaussianDiffusion, x0: Tensor, mask: Tensor, seed: int) -> None:
        self.diffusion = diffusion
        self.x0 = x0
        self.mask = mask.to(device=x0.device, dtype=x0.dtype).expand_as(x0)
        self.generator = make_generator(derive_seed("inpaint_known", seed), "cpu")

    def __call__(self, x: Tensor, t_next: int) -> Tensor:
        if t_next < 0:
            known = self.x0
        else:
            eps = torch.randn(self.x0.shape, generator=self.generator).to(device=x.device, dtype=x.dtype)
            known = self.diffusion.q_sample(self.x0, full_timestep(t_next, self.x0), eps)
        return self.mask * known + (1 - self.mask) * x


@torch.no_grad()
def inpaint_replacement(
    model: Model,
    sampler: AncestralSampler,
    x0: Tensor,
    mask: Tensor,
    *,
    seed: int = 0,
    cond: Cond | None = None,
) -> Tensor:
    """Complete the unknown pixels (``mask == 0``) of ``x0`` [N, C, H, W]; returns the samples [N, C, H, W].

    ``mask`` broadcasts to ``x0`` (1 = known). Image i's reverse noise is ``PerSampleNoise`` seed
    ``seed + i``; the known pixels' forward draws come from ``seed`` (see :class:`ReplaceKnown`).
    ``sampler`` is an :class:`AncestralSampler`, full or respaced (its base diffusion noises x_0).
    """
    if not isinstance(sampler, AncestralSampler):
        raise ConfigError("inpainting runs the ancestral chain: pass an AncestralSampler (respaced or not)")
    if x0.dim() != 4:
        raise ConfigError(f"x0 must be a batch [N, C, H, W], got shape {tuple(x0.shape)}")
    hook = ReplaceKnown(sampler.base_diffusion, x0, mask, seed)
    noise = PerSampleNoise(range(seed, seed + x0.shape[0]), x0.device)
    t_top = sampler.timesteps[-1]
    x_top = hook(noise.randn(x0.shape[1:], x0.device, x0.dtype), t_top)
    return sampler.sample_from(model, x_top, t_top, noise, hook=hook, cond=cond)


__all__ = ["ReplaceKnown", "center_mask", "inpaint_replacement"]
