"""The one device resolution of the entry points: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``."""

from __future__ import annotations

import os

import torch

from ddpm.errors import ConfigError


def resolve_device(name: str | None) -> torch.device:
    """``auto``/None: this rank's GPU if one is visible, else the CPU; ``cuda``: this rank's GPU
    (``LOCAL_RANK``); ``cuda:N``, ``cpu``: as given. Asking for a GPU that is not there is a ConfigError."""
    name = name or "auto"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no GPU is visible: use device=cpu or device=auto")
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


__all__ = ["resolve_device"]
