"""The command line's ``labels=`` key: which classes a class-conditional model is asked for.

``ddpm-sample`` and ``ddpm-eval`` turn it into the conditioning ``{"class_labels": y}`` of the model call
(:data:`ddpm.diffusion.denoiser.LABELS_KEY`); classifier-free guidance nulls it with
:func:`ddpm.diffusion.denoiser.null_labels`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ddpm.diffusion.denoiser import LABELS_KEY
from ddpm.errors import ConfigError
from ddpm.evaluation.generation import balanced_labels


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


def null_class_use(spec: object, guidance_scale: float | None, nll: bool = False) -> str | None:
    """What a command asks of a class-conditional model's null class, in the user's words (None: nothing):
    guidance (w != 0), unconditional samples (``labels=null``) or the unconditional NLL. Checked against
    the model by :func:`ddpm.weights.loaded.check_null_class`."""
    if guidance_scale is not None and float(guidance_scale) != 0.0:
        return f"guidance_scale={guidance_scale}"
    if spec is None:
        return "labels=null (unconditional samples)"
    return "the NLL (of the unconditional model)" if nll else None


def label_cond(
    spec: object, num_images: int, num_classes: int, guidance_scale: float | None = None
) -> dict[str, Tensor]:
    """The model call's conditioning for :func:`labels_for`'s labels: ``{"class_labels": y}``, or ``{}``."""
    labels = labels_for(spec, num_images, num_classes, guidance_scale)
    return {} if labels is None else {LABELS_KEY: labels}


__all__ = ["balanced_labels", "label_cond", "labels_for", "null_class_use"]
