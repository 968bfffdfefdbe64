"""Conversions between model space [-1, 1] and pixels, and sample grids."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid

from ddpm.io.atomic import atomic_write


def to_uint8(x: Tensor) -> Tensor:
    """Model-space images in [-1, 1] -> uint8 pixels in [0, 255] (round to nearest, as the official code)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def image_grid(x: Tensor, nrow: int | None = None, padding: int = 2) -> Tensor:
    """A uint8 [C, H, W] grid of a batch of model-space images (square by default)."""
    nrow = nrow or max(1, math.ceil(math.sqrt(x.shape[0])))
    grid = make_grid(to_uint8(x.detach().cpu()).float(), nrow=nrow, padding=padding, pad_value=255)
    return grid.to(torch.uint8)


def save_image_grid(x: Tensor, path: str | Path, nrow: int | None = None, min_cell: int = 64) -> Path:
    """Save a batch of model-space images as one PNG grid; returns the path.

    Small images are enlarged (nearest neighbour, whole pixels) so each cell is at least ``min_cell``
    pixels high and the grid is readable on screen; pass ``min_cell=0`` for the exact pixels.
    """
    grid = image_grid(x, nrow)
    array = grid.permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        array = array[:, :, 0]
    image = Image.fromarray(array)
    scale = max(1, math.ceil(min_cell / x.shape[-2])) if min_cell else 1
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return atomic_write(path, lambda f: image.save(f, format="PNG"))  # never a half-written PNG
