"""Conversions between model space [-1, 1] and pixels, and sample grids."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid


def to_uint8(x: Tensor) -> Tensor:
    """Model-space images in [-1, 1] -> uint8 pixels in [0, 255] (round to nearest, as the official code)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def image_grid(x: Tensor, nrow: int | None = None, padding: int = 2) -> Tensor:
    """A uint8 [C, H, W] grid of a batch of model-space images (square by default)."""
    nrow = nrow or max(1, math.ceil(math.sqrt(x.shape[0])))
    grid = make_grid(to_uint8(x.detach().cpu()).float(), nrow=nrow, padding=padding, pad_value=255)
    return grid.to(torch.uint8)


def save_image_grid(x: Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save a batch of model-space images as one PNG grid; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid(x, nrow)
    array = grid.permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        array = array[:, :, 0]
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(array).save(tmp)
    tmp.replace(path)  # atomic: never a half-written PNG
    return path
