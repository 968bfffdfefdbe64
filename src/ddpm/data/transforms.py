"""Pixel conversions shared by the datasets, and the batch-level random flip.

Model space is float32 in [-1, 1]: ``x / 127.5 - 1`` on uint8 pixels (the official code), no
dequantisation noise.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def uint8_to_model(pixels: np.ndarray | Tensor) -> Tensor:
    """uint8 pixels (any layout) -> float32 tensor in [-1, 1], ``x / 127.5 - 1``."""
    if isinstance(pixels, Tensor):
        if pixels.dtype != torch.uint8:
            raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
        return pixels.to(torch.float32) / 127.5 - 1.0
    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {array.dtype}")
    return torch.from_numpy(array.astype(np.float32)) / 127.5 - 1.0


def center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """Center crop to the largest square, then resize to ``size`` x ``size`` (bicubic, antialiased).

    Used for image folders (LSUN follows :func:`create_lsun_pixels`). The crop offset is
    ``(long - short) // 2``.
    PIL's bicubic resize widens its kernel when downscaling, so it antialiases.
    """
    width, height = image.size
    side = min(width, height)
    if (width, height) != (side, side):
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), resample=Image.Resampling.BICUBIC)
    return image


def create_lsun_pixels(image: Image.Image, size: int) -> np.ndarray:
    """StyleGAN2's ``dataset_tool.py create_lsun`` steps: uint8 [size, size, 3].

    RGB, centre crop to the square of side ``min(h, w)`` at offset ``((h - side) // 2, (w - side) // 2)``
    (its numpy slice), then PIL ``ANTIALIAS`` (= ``LANCZOS``) resize to ``size``, kept as uint8. The
    paper's LSUN data went through these steps (decoded there by OpenCV, here by PIL: the same
    libjpeg-turbo decoder in both wheels, but no EXIF rotation here).
    """
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    height, width = array.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(np.ascontiguousarray(array[top : top + side, left : left + side]), "RGB")
    return np.asarray(square.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def to_8bit(image: Image.Image) -> Image.Image:
    """An image PIL can convert to "RGB"/"L" without loss or warnings: a palette with transparency
    goes through RGBA (alpha dropped after), 16-bit grayscale is scaled to 8 bits (PIL would clip it)."""
    if image.mode == "P" and "transparency" in image.info:
        return image.convert("RGBA")
    if image.mode == "I" or image.mode.startswith("I;16"):
        wide = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.round(wide / 257.0).clip(0, 255).astype(np.uint8), "L")
    return image


def pil_to_model(image: Image.Image, size: int, channels: int = 3) -> Tensor:
    """A PIL image -> 8-bit RGB (alpha dropped) or grayscale -> center crop + resize -> float32
    [C, size, size] in [-1, 1]."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = to_8bit(image).convert("L" if channels == 1 else "RGB")
    image = center_crop_resize(image, size)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return uint8_to_model(np.ascontiguousarray(array.transpose(2, 0, 1)))


def random_flip_batch(batch: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Flip each image of a [B, C, H, W] batch along the width axis with probability ``p``.

    The draw is ``torch.rand(B, generator=generator)`` on the batch's device, so the flipped subset is
    a function of the generator's seed alone (for a given device type and batch size).
    """
    if batch.ndim != 4:
        raise ValueError(f"expected a [B, C, H, W] batch, got shape {tuple(batch.shape)}")
    flip = torch.rand(batch.shape[0], generator=generator, device=batch.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)
