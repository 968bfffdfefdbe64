"""Classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598) as a wrapper around any sampler.

One network trained with label dropout predicts both eps(x_t, y) and the unconditional eps(x_t) (the
null class, label :data:`NULL_LABEL`). Guidance samples with

    eps_w(x_t, y) = eps(x_t, y) + w * (eps(x_t, y) - eps(x_t))            (Ho & Salimans 2022, eq. 6)

This is the paper's convention (their ``(1 + w) eps_c - w eps_u``): ``w = 0`` is plain conditional
sampling (bit for bit: no unconditional call is made), ``w = -1`` is unconditional sampling, and w > 0
moves samples away from the unconditional model (diffusers' / Imagen's "guidance scale" s is ``1 + w``).

The guided combination is applied to the model *output*, whatever it parameterises (eps, x_0, v or
mu): each is affine in eps at fixed x_t, so combining outputs equals combining eps. For a learned
variance (2C output channels) only the first C (the mean half) are guided; the variance half is the
conditional one's. Per step the conditional and unconditional halves go through the network in ONE
batched call of 2B rows (x_t, t and cond repeated, the labels of the second half set to the null class).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ddpm.diffusion.denoiser import Cond, Model
from ddpm.errors import ConfigError
from ddpm.sampling.base import Sampler
from ddpm.sampling.noise import NoiseSource

NULL_LABEL = -1  # the class label meaning "no class" (the null class of label dropout)
LABELS_KEY = "class_labels"  # the conditioning key of class labels, as EDM and diffusers name it


def guide(cond_out: Tensor, uncond_out: Tensor, scale: float, channels: int) -> Tensor:
    """``c + w (c - u)`` on the first ``channels`` channels (the mean half); the rest is ``c``'s."""
    mean = cond_out[:, :channels] + scale * (cond_out[:, :channels] - uncond_out[:, :channels])
    if cond_out.shape[1] == channels:
        return mean
    return torch.cat([mean, cond_out[:, channels:]], dim=1)


class GuidedModel:
    """``model(x_t, t, class_labels=y)`` turned into the guided prediction ``eps_w(x_t, y)`` (see module doc).

    ``calls`` counts the network calls it made (one per prediction).
    """

    def __init__(self, model: Model, scale: float) -> None:
        self.model = model
        self.scale = float(scale)
        self.calls = 0

    def __call__(self, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        labels = cond.get(LABELS_KEY)
        if labels is None:
            raise ConfigError(
                "classifier-free guidance needs class labels: give labels (e.g. labels=balanced) or set "
                "guidance_scale=null for unconditional sampling"
            )
        self.calls += 1
        if self.scale == 0.0:  # plain conditional sampling: the unconditional half is not needed
            return self.model(x_t, t, **cond)
        b = x_t.shape[0]
        both = {key: torch.cat([value, value]) for key, value in cond.items() if key != LABELS_KEY}
        both[LABELS_KEY] = torch.cat([labels, torch.full_like(labels, NULL_LABEL)])
        out = self.model(torch.cat([x_t, x_t]), torch.cat([t, t]), **both)
        return guide(out[:b], out[b:], self.scale, x_t.shape[1])


class GuidedSampler:
    """Any :class:`~ddpm.sampling.base.Sampler` run on the guided model: itself a Sampler.

    ``num_steps`` (network calls per image) is the wrapped sampler's; every call carries
    ``rows_per_image`` rows per image (2, or 1 for ``guidance_scale=0``).
    """

    def __init__(self, sampler: Sampler, guidance_scale: float) -> None:
        scale = float(guidance_scale)
        if not math.isfinite(scale) or scale < -1.0:
            raise ConfigError(
                f"guidance_scale must be a number >= -1 (0: conditional, -1: unconditional), got {scale}"
            )
        self.sampler = sampler
        self.guidance_scale = scale
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
        """The wrapped sampler's ``sample`` on the guided model (``cond`` must hold ``class_labels``)."""
        guided = GuidedModel(model, self.guidance_scale)
        return self.sampler.sample(guided, shape, noise, device, progress, cond=cond, **kwargs)

    def sample_from(self, model: Model, x_t: Tensor, t: int, *args: Any, **kwargs: Any) -> Tensor:
        """The wrapped sampler's ``sample_from`` on the guided model."""
        return self.sampler.sample_from(GuidedModel(model, self.guidance_scale), x_t, t, *args, **kwargs)


def with_guidance(sampler: Sampler, guidance_scale: float | None) -> Sampler:
    """``sampler`` itself for ``guidance_scale=None`` (no guidance), else a :class:`GuidedSampler`."""
    if guidance_scale is None:
        return sampler
    return GuidedSampler(sampler, guidance_scale)


def balanced_labels(num_images: int, num_classes: int) -> Tensor:
    """Class-balanced labels ``i % num_classes`` (int64 [N]): the class-conditional evaluation protocol."""
    if num_classes < 1:
        raise ConfigError(f"balanced labels need a class-conditional model (num_classes >= 1): {num_classes}")
    return torch.arange(int(num_images), dtype=torch.long) % int(num_classes)


def labels_for(
    spec: object, num_images: int, num_classes: int, guidance_scale: float | None = None
) -> Tensor | None:
    """The class labels of ``num_images`` images from a user's ``labels`` setting (int64 [N] or None).

    ``None``: unconditional (the null class); ``"balanced"``: ``i % num_classes``; an int: every image;
    a list: repeated cyclically over the images (``[3, 7]`` alternates 3 and 7). A ``guidance_scale``
    needs labels.
    """
    if spec is None:
        if guidance_scale is not None:
            raise ConfigError(
                f"guidance_scale={guidance_scale} needs class labels: add labels=balanced (or a class index)"
            )
        return None
    if num_classes < 1:
        raise ConfigError(
            f"labels={spec} but the model is unconditional (num_classes=0): drop labels (and guidance_scale)"
        )
    if isinstance(spec, str) and spec.strip().lower() == "balanced":
        return balanced_labels(num_images, num_classes)
    values = [spec] if isinstance(spec, int | str) else list(spec)  # type: ignore[call-overload]
    try:
        labels = torch.tensor([int(v) for v in values], dtype=torch.long)
    except (TypeError, ValueError):
        raise ConfigError(f"labels must be a class index, a list of them or 'balanced': {spec!r}") from None
    if labels.numel() == 0 or bool(((labels < 0) | (labels >= num_classes)).any()):
        raise ConfigError(f"labels must be class indices in 0..{num_classes - 1}, got {spec!r}")
    return labels.repeat((num_images + labels.numel() - 1) // labels.numel())[:num_images]


__all__ = [
    "LABELS_KEY",
    "NULL_LABEL",
    "GuidedModel",
    "GuidedSampler",
    "balanced_labels",
    "guide",
    "labels_for",
    "with_guidance",
]
