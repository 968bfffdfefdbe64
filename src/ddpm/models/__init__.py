"""The noise-prediction network: the DDPM U-Net (its diffusers port lives in :mod:`ddpm.weights`)."""

from ddpm.models.unet import UNet

__all__ = ["UNet"]
