"""Classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598) as a wrapper around any sampler.

One network trained with conditioning dropout predicts both eps(x_t, c) and the unconditional eps(x_t)
(the null conditioning: for class labels the null class, :data:`~ddpm.diffusion.denoiser.NULL_LABEL`).
Guidance samples with

    eps_w(x_t, c) = eps(x_t, c) + w * (eps(x_t, c) - eps(x_t))            (Ho & Salimans 2022, eq. 6)

This is the paper's convention (their ``(1 + w) eps_c - w eps_u``): ``w = 0`` is plain conditional
sampling (bit for bit: no unconditional call is made), ``w = -1`` is unconditional sampling, and w > 0
moves samples away from the unconditional model (diffusers' / Imagen's "guidance scale" s is ``1 + w``).

The guided combination is applied to the model *output*, whatever it parameterises (eps, x_0, v or
mu): each is affine in eps at fixed x_t, so combining outputs equals combining eps. For a learned
variance (2C output channels) only the first C (the mean half) are guided; the variance half is the
conditional one's. Per step the conditional and unconditional halves go through the network in ONE
batched call of 2B rows: x_t and t repeated, ``cond`` followed by its null version ``null_cond(cond)``
(a :data:`~ddpm.diffusion.denoiser.NullCond`; class labels' :func:`~ddpm.diffusion.denoiser.null_labels`
by default, any other conditioning kind brings its own).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ddpm.diffusion.denoiser import Cond, Model, NullCond, null_labels
from ddpm.errors import ConfigError
from ddpm.sampling.base import Sampler
from ddpm.sampling.noise import NoiseSource


def guide(cond_out: Tensor, uncond_out: Tensor, scale: float, channels: int) -> Tensor:
    """``c + w (c - u)`` on the first ``channels`` channels (the mean half); the rest is ``c``'s."""
    mean = cond_out[:, :channels] + scale * (cond_out[:, :channels] - uncond_out[:, :channels])
    if cond_out.shape[1] == channels:
        return mean
    return torch.cat([mean, cond_out[:, channels:]], dim=1)


class GuidedModel:
    """``model(x_t, t, **cond)`` turned into the guided prediction ``eps_w(x_t, c)`` (see module doc).

    ``null_cond`` maps a batch's conditioning to its null version (class labels to the null class by
    default); it also refuses a ``cond`` it cannot guide. ``calls`` counts the network calls it made.
    """

    def __init__(self, model: Model, scale: float, null_cond: NullCond = null_labels) -> None:
        self.model = model
        self.scale = float(scale)
        self.null_cond = null_cond
        self.calls = 0

    def __call__(self, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        null = self.null_cond(cond)  # checked at every scale, also where it is not used
        self.calls += 1
        if self.scale == 0.0:  # plain conditional sampling: the unconditional half is not needed
            return self.model(x_t, t, **cond)
        b = x_t.shape[0]
        both = {key: torch.cat([value, null[key]]) for key, value in cond.items()}
        out = self.model(torch.cat([x_t, x_t]), torch.cat([t, t]), **both)
        return guide(out[:b], out[b:], self.scale, x_t.shape[1])


class GuidedSampler:
    """Any :class:`~ddpm.sampling.base.Sampler` run on the guided model: itself a Sampler.

    ``num_steps`` (network calls per image) is the wrapped sampler's; every call carries
    ``rows_per_image`` rows per image (2, or 1 for ``guidance_scale=0``). ``null_cond``: see
    :class:`GuidedModel`.
    """

    def __init__(self, sampler: Sampler, guidance_scale: float, null_cond: NullCond = null_labels) -> None:
        scale = float(guidance_scale)
        if not math.isfinite(scale) or scale < -1.0:
            raise ConfigError(
                f"guidance_scale must be a number >= -1 (0: conditional, -1: unconditional), got {scale}"
            )
        self.sampler = sampler
        self.guidance_scale = scale
        self.null_cond = null_cond
        if hasattr(sampler, "diffusion"):  # what samples depend on, for describe_sampler
            self.diffusion = sampler.diffusion

    @property
    def timesteps(self) -> list[int]:
        return self.sampler.timesteps

    @property
    def num_steps(self) -> int:
        return self.sampler.num_steps

    @property
    def rows_per_image(self) -> int:
        return 1 if self.guidance_scale == 0.0 else 2

    def sample(
        self,
        model: Model,
        shape: Sequence[int],
        noise: NoiseSource,
        device: torch.device | str = "cpu",
        progress: bool = False,
        *,
        cond: Cond | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """The wrapped sampler's ``sample`` on the guided model (``cond`` must have a null version)."""
        guided = GuidedModel(model, self.guidance_scale, self.null_cond)
        return self.sampler.sample(guided, shape, noise, device, progress, cond=cond, **kwargs)

    def sample_from(self, model: Model, x_t: Tensor, t: int, *args: Any, **kwargs: Any) -> Tensor:
        """The wrapped sampler's ``sample_from`` on the guided model."""
        guided = GuidedModel(model, self.guidance_scale, self.null_cond)
        return self.sampler.sample_from(guided, x_t, t, *args, **kwargs)


def with_guidance(
    sampler: Sampler, guidance_scale: float | None, null_cond: NullCond = null_labels
) -> Sampler:
    """``sampler`` itself for ``guidance_scale=None`` (no guidance), else a :class:`GuidedSampler`."""
    if guidance_scale is None:
        return sampler
    return GuidedSampler(sampler, guidance_scale, null_cond)


def describe_sampling(sampler: Sampler) -> str:
    """A sampler's work per image in words, for a log line: its name and network calls, and under guidance
    the inner sampler, w, diffusers' ``guidance_scale`` (1 + w) and the rows per call (the progress bar
    counts network calls x rows x images)."""
    if not isinstance(sampler, GuidedSampler):
        return f"{type(sampler).__name__} ({sampler.num_steps} network calls per image)"
    w, steps, rows = sampler.guidance_scale, sampler.num_steps, sampler.rows_per_image
    work = (
        f"{steps} network calls per image of {rows} rows (conditional + unconditional), {steps * rows} in all"
        if rows > 1
        else f"{steps} network calls per image (plain conditional: no unconditional row)"
    )
    return (
        f"{type(sampler.sampler).__name__} under classifier-free guidance w={w:g} "
        f"(diffusers' guidance_scale={1 + w:g}): {work}"
    )


# Names that moved out of this module, still importable from it until src/ddpm/evaluation/,
# src/ddpm/callbacks/ and cli/ddpm_eval.py (restructured on another branch) import their new homes:
# then this table and __getattr__ go. Looked up lazily, so sampling/ does not import the CLI.
__all__ = ["GuidedModel", "GuidedSampler", "describe_sampling", "guide", "with_guidance"]
