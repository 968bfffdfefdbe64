"""The one device resolution of the entry points: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``."""

from __future__ import annotations

import os
from typing import Any

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


def check_trainer_devices(accelerator: Any, devices: Any) -> None:
    """A Lightning trainer that asks for GPUs this machine does not have is a one-line ConfigError
    (Lightning's own is a multi-line MisconfigurationException raised while the trainer is built)."""
    if str(accelerator) not in ("gpu", "cuda"):
        return
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible == 0:
        raise ConfigError(
            f"trainer.accelerator={accelerator} needs a CUDA GPU and this machine has none: add trainer=cpu "
            "to train on the CPU (slow for the paper's models)"
        )
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > visible:
        raise ConfigError(
            f"trainer.devices={devices} but {visible} GPU(s) are visible: set trainer.devices={visible}"
        )


__all__ = ["check_trainer_devices", "resolve_device"]
