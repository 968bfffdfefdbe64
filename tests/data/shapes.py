"""A folder of small images of mixed formats with structure a model can learn: a disc or a square of
one colour on a background of another, drawn with PIL (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# (suffix, PIL mode, (width, height)) by image index modulo 5: RGBA PNG, RGB JPEG, grayscale PNG,
# non-square RGB PNG, odd-sized BMP
FORMATS = (
    (".png", "RGBA", (32, 32)),
    (".jpg", "RGB", (40, 40)),
    (".png", "L", (32, 32)),
    (".png", "RGB", (48, 36)),
    (".bmp", "RGB", (33, 33)),
)


def shape_image(rng: np.random.Generator, mode: str, size: tuple[int, int]) -> Image.Image:
    """A disc or a square (a third to half of the short side) at a random place on a plain background."""
    background, foreground = (tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(2))
    image = Image.new("RGB", size, background)
    short = min(size)
    side = int(rng.integers(short // 3, short // 2 + 1))
    left = int(rng.integers(0, size[0] - side))
    top = int(rng.integers(0, size[1] - side))
    box = (left, top, left + side, top + side)
    draw = ImageDraw.Draw(image)
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=foreground)
    return image.convert(mode)


def write_shapes_folder(folder: str | Path, n: int = 300, seed: int = 0) -> Path:
    """``n`` shape images in ``folder`` (created), cycling through :data:`FORMATS`; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        suffix, mode, size = FORMATS[i % len(FORMATS)]
        shape_image(rng, mode, size).save(folder / f"shape_{i:04d}{suffix}")
    return folder
