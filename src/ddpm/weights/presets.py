"""The paper's released models by name (``pretrained=<preset>``): each names its model yaml, and what is not
architecture.

The architecture of a released model, and its dropout, are read from ``configs/model/<model>.yaml`` (the
config ``ddpm-train model=<model>`` trains) with OmegaConf: those yamls are the one table of the paper's
U-Nets. A preset adds the reverse variance the paper samples it with, the dataset config its numbers are
measured on, and where the weights were published. The paper's forward process, which every released model
was trained with, is :func:`paper_diffusion`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import CheckpointError, ConfigError
from ddpm.utils.config import config_dir

MODEL_GROUP = "model"  # the config group: <configs>/model/<name>.yaml
# the U-Net arguments that make a released model's architecture, checked against the weights' own
ARCHITECTURE = ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "resolution")


@functools.cache
def model_settings(name: str) -> dict[str, Any]:
    """The plain settings of the shipped ``configs/model/<name>.yaml`` (lists as tuples).

    :param name: the model config's name, e.g. ``unet_cifar10``.
    :return: its keys with a plain value, and those that follow the data config (``resolution``,
        ``in_channels``) with their value without one (the released model's); other interpolations
        (``out_channels``) are left out.
    """
    path = config_dir() / MODEL_GROUP / f"{name}.yaml"
    node = OmegaConf.load(path)
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path} must be a mapping of U-Net settings")
    raw = OmegaConf.to_container(node, resolve=False)
    settings = {}
    for key in node:
        if OmegaConf.is_interpolation(node, str(key)) and "data." not in str(raw[key]):
            continue
        value = node[key]
        settings[str(key)] = tuple(value) if isinstance(value, ListConfig) else value
    return settings


@dataclass(frozen=True)
class Preset:
    """A released model: its model yaml, its sampling variance and dataset config (its published numbers
    are :data:`ddpm.evaluation.paper_numbers.PAPER` under the dataset's family) and where it was published."""

    model: str  # configs/model/<model>.yaml: the architecture and the dropout it was trained with
    var_type: str  # the reverse variance the paper samples it with
    data: str  # configs/data/<data>.yaml
    diffusers_id: str
    pesser_name: str

    @property
    def unet(self) -> dict[str, Any]:
        """The :data:`ARCHITECTURE` arguments of the model yaml."""
        settings = model_settings(self.model)
        return {key: settings[key] for key in ARCHITECTURE}

    @property
    def dropout(self) -> float:
        """The model yaml's dropout (0.1 on CIFAR-10, 0 at 256x256, as in the paper)."""
        return float(model_settings(self.model)["dropout"])


# name: (model yaml, the paper's reverse variance, data config, diffusers' hub id); the pesser folder of each
# is ema_diffusion_<name>_model
_RELEASED = {
    "cifar10": ("unet_cifar10", "fixed_large", "cifar10", "google/ddpm-cifar10-32"),
    "lsun_church": ("unet_lsun256", "fixed_small", "lsun_church", "google/ddpm-church-256"),
    "lsun_bedroom": ("unet_lsun256", "fixed_small", "lsun_bedroom", "google/ddpm-bedroom-256"),
    "lsun_cat": ("unet_lsun256", "fixed_small", "lsun_cat", "google/ddpm-cat-256"),
    "celeba_hq": ("unet_lsun256", "fixed_small", "image_folder", "google/ddpm-celebahq-256"),
}
PRESETS: dict[str, Preset] = {
    name: Preset(*row, pesser_name=f"ema_diffusion_{name}_model") for name, row in _RELEASED.items()
}


def get_preset(name: str | None) -> Preset | None:
    """The preset called ``name``; None for None.

    :raises ConfigError: an unknown name (the line lists the known ones).
    """
    if name is None:
        return None
    if name not in PRESETS:
        raise ConfigError(f"unknown pretrained preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def paper_var_type(preset: Preset | None, resolution: int) -> str:
    """The reverse variance the paper samples with: the preset's, else fixed-large up to 32x32 (CIFAR-10)
    and fixed-small above (the 256x256 models)."""
    if preset is not None:
        return preset.var_type
    return "fixed_large" if resolution <= 32 else "fixed_small"


def paper_diffusion(var_type: str) -> GaussianDiffusion:
    """The paper's forward process (linear betas 1e-4..0.02, T=1000, eps prediction) sampled with
    ``var_type``."""
    return GaussianDiffusion("linear", 1000, 1e-4, 0.02, mean_type="eps", var_type=var_type)  # type: ignore[arg-type]


def _norm(value: Any) -> Any:
    """Lists and tuples as tuples of ints (yaml lists and ours compare equal)."""
    return tuple(int(v) for v in value) if isinstance(value, list | tuple) else value


def check_against_preset(
    kwargs: Mapping[str, Any], preset: Preset | None, name: str | None, source: str | Path
) -> None:
    """Refuse weights whose architecture is not the named preset's (nothing to check without one).

    :param kwargs: the U-Net arguments the weights describe.
    :raises CheckpointError: one line naming each argument that differs.
    """
    if preset is None:
        return
    mismatches = [
        f"{key}={_norm(kwargs[key])} (preset {name} expects {_norm(value)})"
        for key, value in preset.unet.items()
        if _norm(kwargs[key]) != _norm(value)
    ]
    if mismatches:
        raise CheckpointError(
            f"{source} is not the {name} model: {'; '.join(mismatches)}; "
            f"pass the matching pretrained=<preset> ({', '.join(PRESETS)}) or the right weights"
        )


__all__ = [
    "ARCHITECTURE",
    "PRESETS",
    "Preset",
    "check_against_preset",
    "get_preset",
    "model_settings",
    "paper_diffusion",
    "paper_var_type",
]
