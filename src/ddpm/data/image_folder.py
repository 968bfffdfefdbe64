"""A directory of the user's own images (searched recursively)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ddpm.data.bad_images import BadImagePolicy, report_bad_images, undecodable
from ddpm.data.base import DiffusionDataModule, at_least
from ddpm.data.splits import num_val_items, split_indices
from ddpm.data.transforms import pil_to_model
from ddpm.diffusion.denoiser import LABELS_KEY
from ddpm.errors import ConfigError, DatasetNotFoundError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def find_images(root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under ``root`` (recursive, case-insensitive extensions), sorted by relative path.

    Raises :class:`~ddpm.errors.DatasetNotFoundError` if ``root`` is missing or holds no image.
    """
    root = Path(root)
    if root.is_file():
        raise DatasetNotFoundError(
            f"data.path {root} is a file, not a folder: set data.path to the folder that holds your images "
            f"(e.g. data.path={root.parent})"
        )
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"image folder {root} does not exist: set data.path to a directory of images "
            f"({'/'.join(e.lstrip('.') for e in extensions)})"
        )
    suffixes = {e.lower() for e in extensions}
    files = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise DatasetNotFoundError(
            f"image folder {root} holds no images (looked recursively for "
            f"{', '.join(sorted(suffixes))}): put your images there or fix data.path"
        )
    return files


ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
GRAY_MODES = ("1", "L", "LA", "La", "I", "F")
SURVEY_SIZE = 1000  # image headers read to say what is done to the images (all of them up to this)


def _header(path: Path) -> tuple[str, tuple[int, int], bool] | None:
    """(mode, (width, height), has alpha) from the file's header alone; None if PIL cannot open it."""
    try:
        with Image.open(path) as image:
            alpha = image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)
            return image.mode, image.size, alpha
    except Exception:  # the loader meets it again and names it (ddpm.data.bad_images)
        return None


def survey_images(files: Sequence[Path], image_size: int, channels: int) -> str:
    """One line saying what loading does to the images: alpha dropped, converted to RGB or grayscale,
    centre-cropped, resized. Reads the headers of all files, or of :data:`SURVEY_SIZE` spread over them."""
    step = max(1, -(-len(files) // SURVEY_SIZE))
    headers = [_header(f) for f in files[::step]]
    good = [h for h in headers if h is not None]
    done = {
        "with alpha (dropped)": sum(alpha for _, _, alpha in good),
        "grayscale (copied to RGB)" if channels == 3 else "in colour (converted to grayscale)": sum(
            (mode.split(";")[0] in GRAY_MODES) == (channels == 3) for mode, _, _ in good
        ),
        "not square (centre-cropped)": sum(w != h for _, (w, h), _ in good),
        f"not {image_size}x{image_size} (resized)": sum(min(size) != image_size for _, size, _ in good),
        "unreadable (named when loaded)": len(headers) - len(good),
    }
    counted = f"{len(files)} images" if step == 1 else f"{len(headers)} of {len(files)} images surveyed"
    said = ", ".join(f"{n} {what}" for what, n in done.items() if n)
    shape = f"{channels}x{image_size}x{image_size}"
    return f"{counted} loaded as {shape}: {said}" if said else f"{counted}, all {shape} already"


def class_of_files(root: str | Path, files: Sequence[Path]) -> tuple[list[str], list[int]]:
    """Class names (the sorted names of the subfolders of ``root`` that hold images) and each file's class
    index (its top-level subfolder's position in that list), as torchvision's ``ImageFolder``."""
    root = Path(root)
    parts = [f.relative_to(root).parts for f in files]
    loose = [Path(*p).as_posix() for p in parts if len(p) == 1]
    if loose:
        raise ConfigError(
            f"data.class_labels=true needs every image of {root} in a class subfolder "
            f"(<class>/<image>), but {len(loose)} lie directly in it, e.g. {loose[0]}: move them into a "
            "subfolder or set data.class_labels=false"
        )
    names = sorted({p[0] for p in parts})
    index = {name: i for i, name in enumerate(names)}
    return names, [index[p[0]] for p in parts]


class ImageFileDataset(Dataset):
    """Image files -> center crop + resize to ``image_size`` -> float32 [C, S, S] in [-1, 1].

    A truncated or corrupt file raises :class:`~ddpm.data.bad_images.BadImageError` naming it, or is
    replaced by the next good file, as ``bad_images`` says (raise when None). With ``labels`` (one class
    index per file) items are ``(image, {"class_labels": label})``; a replacement brings its own label.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        image_size: int,
        channels: int = 3,
        bad_images: BadImagePolicy | None = None,
        labels: Sequence[int] | None = None,
    ) -> None:
        self.files = [str(f) for f in files]
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.bad_images = bad_images or BadImagePolicy(skip=False, what="image folder")

    def __len__(self) -> int:
        return len(self.files)

    def decode(self, index: int) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Item ``index``; :class:`BadImageError` if its file cannot be decoded."""
        try:
            with Image.open(self.files[index]) as image:
                pixels = pil_to_model(image, self.image_size, self.channels)
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on bad files
            raise undecodable(f"image file {self.files[index]}", exc) from None
        return pixels if self.labels is None else (pixels, {LABELS_KEY: self.labels[index]})

    def __getitem__(self, index: int) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        return self.bad_images.load(index, len(self), self.decode)


class ImageFolderDataModule(DiffusionDataModule):
    """Your own images: any png/jpg/jpeg/webp/bmp under ``path`` (recursive).

    Each image is center cropped to a square and resized to ``image_size`` (bicubic, antialiased),
    converted to RGB, or to one channel with ``grayscale=True``.

    Args:
        path: the image directory.
        image_size: output resolution.
        grayscale: one channel instead of three.
        val_fraction: share held out for validation (at least one image), a fixed random subset of the
            sorted file list chosen by ``split_seed`` (see :func:`ddpm.data.splits.split_indices`).
        split_seed: seed of the split (independent of ``seed``, which drives order and flips).
        skip_bad_images: replace a truncated or corrupt file by the next good one and count it,
            instead of stopping with an error naming the file (:mod:`ddpm.data.bad_images`).
        class_labels: class-conditional batches ``(x0, {"class_labels": y})``: ``path`` holds one
            subfolder per class (``path/<class>/**/<image>``), classes numbered in sorted name order.
        Other arguments: see :class:`~ddpm.data.base.DiffusionDataModule`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        image_size: int = 64,
        grayscale: bool = False,
        val_fraction: float = 0.05,
        split_seed: int = 0,
        skip_bad_images: bool = False,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.image_size = at_least("image_size", image_size, 1)
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
        self.path = Path(path)
        self.grayscale = bool(grayscale)
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)
        self.skip_bad_images = bool(skip_bad_images)

    has_classes = True

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1 if self.grayscale else 3, self.image_size, self.image_size)

    @property
    def class_names(self) -> list[str]:
        """The class subfolders of ``path``, sorted: class i is ``class_names[i]``."""
        return class_of_files(self.path, find_images(self.path))[0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def prepare_data(self) -> None:
        find_images(self.path)  # fail early, in one line

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None and self.val_set is not None:
            return
        files = find_images(self.path)
        rank_zero_info(
            f"image folder {self.path}: {survey_images(files, self.image_size, self.image_shape[0])}"
        )
        labels = class_of_files(self.path, files)[1] if self.class_labels else None
        train_idx, val_idx = split_indices(
            len(files), num_val_items(len(files), self.val_fraction), self.split_seed
        )
        for split, indices in (("train", train_idx), ("val", val_idx)):
            dataset = ImageFileDataset(
                [files[i] for i in indices],
                self.image_size,
                channels=self.image_shape[0],
                bad_images=BadImagePolicy(self.skip_bad_images, what=f"image folder {self.path} ({split})"),
                labels=None if labels is None else [labels[i] for i in indices],
            )
            setattr(self, f"{split}_set", dataset)

    def teardown(self, stage: str | None = None) -> None:
        for dataset in (self.train_set, self.val_set):
            report_bad_images(dataset, "since the last report")
