"""Noise-prediction networks: the DDPM U-Net and its diffusers weight port."""

from ddpm.models.diffusers_port import (
    convert_diffusers_state_dict,
    diffusers_config_for,
    load_diffusers_unet,
    unet_kwargs_from_diffusers_config,
)
from ddpm.models.unet import UNet

__all__ = [
    "UNet",
    "convert_diffusers_state_dict",
    "diffusers_config_for",
    "load_diffusers_unet",
    "unet_kwargs_from_diffusers_config",
]
