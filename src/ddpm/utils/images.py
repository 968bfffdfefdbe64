"""Conversions between model space [-1, 1] and pixels, and sample grids."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
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


def grid_image(
    x: Tensor, nrow: int | None = None, min_cell: int = 64, row_labels: Sequence[str] | None = None
) -> Image.Image:
    """The RGB picture of a grid of model-space images, as saved and as logged.

    Small images are enlarged (nearest neighbour, whole pixels) so each cell is at least ``min_cell``
    pixels high and the grid is readable on screen; pass ``min_cell=0`` for the exact pixels. With
    ``row_labels`` (one per row) each row's label is written in a white margin at its left.
    """
    grid = image_grid(x, nrow)
    image = Image.fromarray(grid.permute(1, 2, 0).numpy())  # make_grid gives 3 channels
    scale = max(1, math.ceil(min_cell / x.shape[-2])) if min_cell else 1
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    if row_labels:
        image = _with_row_labels(image, list(row_labels), 2 * scale, (x.shape[-2] + 2) * scale)
    return image


def _with_row_labels(image: Image.Image, labels: list[str], top: int, row_height: int) -> Image.Image:
    """``image`` with ``labels[r]`` written left of row ``r`` (row r starts at ``top + r * row_height``)."""
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(image)
    boxes = [draw.textbbox((0, 0), label, font=font) for label in labels]
    margin = max(box[2] - box[0] for box in boxes) + 8
    labelled = Image.new("RGB", (image.width + margin, image.height), "white")
    labelled.paste(image, (margin, 0))
    draw = ImageDraw.Draw(labelled)
    for r, (label, box) in enumerate(zip(labels, boxes)):
        middle = top + r * row_height + (row_height - top) // 2
        draw.text((4 - box[0], middle - (box[1] + box[3]) // 2), label, fill="black", font=font)
    return labelled


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write ``image`` as a PNG, never half-written; returns the path."""
    return atomic_write(path, lambda f: image.save(f, format="PNG"))


def save_image_grid(x: Tensor, path: str | Path, nrow: int | None = None, min_cell: int = 64) -> Path:
    """Save a batch of model-space images as one PNG grid (:func:`grid_image`); returns the path."""
    return save_png(grid_image(x, nrow, min_cell), path)
