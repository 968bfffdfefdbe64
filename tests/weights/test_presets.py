"""The released presets read their architecture from the model yamls: one table of the paper's U-Nets."""

from __future__ import annotations

import inspect

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from ddpm.errors import ConfigError
from ddpm.models import UNet
from ddpm.utils.config import config_dir
from ddpm.weights import PRESETS, get_preset
from ddpm.weights.presets import ARCHITECTURE, model_settings

PAPER_PARAMS = {"unet_cifar10": 35_746_307, "unet_lsun256": 113_673_219}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_is_its_model_yaml(name: str) -> None:
    preset = PRESETS[name]
    yaml = OmegaConf.load(config_dir() / "model" / f"{preset.model}.yaml")
    plain = OmegaConf.to_container(yaml, resolve=True)  # alone: resolution without a data config
    architecture = {key: plain[key] for key in ARCHITECTURE}
    assert preset.unet == {k: tuple(v) if isinstance(v, list) else v for k, v in architecture.items()}
    assert preset.dropout == yaml.dropout
    with torch.device("meta"):  # the yaml as Hydra builds it (out_channels from the paper's fixed variance)
        built = hydra.utils.instantiate(yaml)
        from_preset = UNet(**preset.unet, dropout=preset.dropout)
    assert sum(p.numel() for p in from_preset.parameters()) == PAPER_PARAMS[preset.model]
    assert sum(p.numel() for p in built.parameters()) == PAPER_PARAMS[preset.model]
    assert (built.dropout, built.ch_mult) == (from_preset.dropout, from_preset.ch_mult)


def test_presets_name_what_is_not_architecture() -> None:
    assert {name: (p.model, p.var_type, p.data, p.dropout) for name, p in PRESETS.items()} == {
        "cifar10": ("unet_cifar10", "fixed_large", "cifar10", 0.1),
        "lsun_church": ("unet_lsun256", "fixed_small", "lsun_church", 0.0),
        "lsun_bedroom": ("unet_lsun256", "fixed_small", "lsun_bedroom", 0.0),
        "lsun_cat": ("unet_lsun256", "fixed_small", "lsun_cat", 0.0),
        "celeba_hq": ("unet_lsun256", "fixed_small", "image_folder", 0.0),
    }
    assert get_preset(None) is None
    with pytest.raises(ConfigError, match="unknown pretrained preset 'cifar': choose one of cifar10, "):
        get_preset("cifar")


def test_model_settings_leave_interpolations_out() -> None:
    settings = model_settings("unet_tiny")
    assert "out_channels" not in settings and settings["ch_mult"] == (1, 2, 2)


def test_the_unet_defaults_are_the_cifar10_yaml() -> None:
    """``UNet()`` is the paper's CIFAR-10 model (diffusers_config_for() relies on it), as the yaml says."""
    defaults = {name: p.default for name, p in inspect.signature(UNet).parameters.items()}
    settings = model_settings("unet_cifar10")
    assert {key: settings[key] for key in settings if key in defaults} == {
        key: defaults[key] for key in settings if key in defaults
    }
    assert set(defaults) - set(settings) == {"out_channels"}  # an interpolation on the variance there
