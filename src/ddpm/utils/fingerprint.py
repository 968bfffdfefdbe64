"""Fingerprints: what a stored result depends on, hashed, so that a result of other inputs is never reused.

:func:`fingerprint` hashes a JSON description of the parts; the other functions describe the parts: the
weights (:func:`module_digest`), a sampler and its diffusion (:func:`describe_sampler`), class labels
(:func:`describe_labels`) and other tensors (:func:`describe_tensor`), and the images of a dataset
(:func:`data_fingerprint`). They key ``ddpm-eval``'s sample, feature and NLL shards and the
reference-statistics cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ddpm.utils.images import to_uint8

_SIMPLE = (int, float, str, bool, type(None))


def fingerprint(**parts: Any) -> str:
    """SHA-256 of a JSON description of everything a result depends on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def module_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state dict (names, shapes, dtypes and bytes): identifies the weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """A JSON-able summary of a setting (long sequences and tensors as a length and a hash)."""
    if isinstance(value, _SIMPLE):
        return value
    if isinstance(value, list | tuple) and len(value) > 16:
        text = json.dumps([_plain(v) for v in value], default=str)
        return {"len": len(value), "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Tensor) and value.numel() <= 16:
        return value.tolist()
    if isinstance(value, Tensor):
        return hashlib.sha256(value.detach().cpu().double().numpy().tobytes()).hexdigest()[:16]
    return None


def describe_diffusion(diffusion: Any) -> dict[str, Any]:
    """The settings of a GaussianDiffusion that change samples (schedule via a hash of its betas)."""
    out = {"class": type(diffusion).__name__}
    for attr in ("num_timesteps", "mean_type", "var_type", "schedule", "betas"):
        if hasattr(diffusion, attr):
            out[attr] = _plain(getattr(diffusion, attr))
    return out


def describe_sampler(sampler: Any) -> dict[str, Any]:
    """The class and simple attributes of a sampler (and its diffusion): part of the fingerprint."""
    out: dict[str, Any] = {"class": f"{type(sampler).__module__}.{type(sampler).__qualname__}"}
    for name, value in sorted(vars(sampler).items()):
        if isinstance(value, nn.Module) and hasattr(value, "betas"):  # the (base / respaced) diffusion
            out[name] = describe_diffusion(value)
        elif hasattr(value, "sample") and hasattr(value, "num_steps"):  # a wrapped sampler (guidance)
            out[name] = describe_sampler(value)
        elif not name.startswith("_") and (plain := _plain(value)) is not None:
            out[name] = plain
    for attr in ("num_steps",):
        if hasattr(sampler, attr):
            out[attr] = _plain(getattr(sampler, attr))
    return out


def describe_labels(labels: Tensor) -> dict[str, Any]:
    """Class labels (int64 [N]), for a fingerprint and the report: their number, counts per class, a hash."""
    counts = torch.bincount(labels).tolist()
    digest = hashlib.sha256(labels.to(torch.int64).numpy().tobytes()).hexdigest()[:16]
    return {"num_labels": int(labels.numel()), "per_class": counts, "sha256": digest}


def describe_tensor(tensor: Tensor) -> dict[str, Any]:
    """A tensor's shape, dtype and a hash of its bytes (e.g. per-sample conditioning other than labels)."""
    t = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()[:16]
    return {"shape": list(t.shape), "dtype": str(t.dtype), "sha256": digest}


def data_fingerprint(num_items: int, probes: Iterable[Tensor]) -> str:
    """BLAKE2 of a dataset's length and of the uint8 pixels of a few of its images (``probes``, float
    images in [-1, 1] or uint8): another data directory with the same name and size is told apart."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(num_items).encode())
    for image in probes:
        pixels = image if image.dtype == torch.uint8 else to_uint8(image)
        digest.update(pixels.cpu().numpy().tobytes())
    return digest.hexdigest()


__all__ = [
    "data_fingerprint",
    "describe_diffusion",
    "describe_labels",
    "describe_sampler",
    "describe_tensor",
    "fingerprint",
    "module_digest",
]
