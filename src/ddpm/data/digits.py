"""scikit-learn's handwritten digits: the embedded default dataset that needs no download."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ddpm.data.base import DiffusionDataModule, LabelledDataset, at_least
from ddpm.data.splits import num_val_items, split_indices


def load_digit_images(image_size: int = 16) -> Tensor:
    """All 1,797 digits of ``sklearn.datasets.load_digits`` as float32 [N, 1, S, S] in [-1, 1].

    The 8x8 images hold ink levels 0..16: ``x = img / 16 * 2 - 1`` maps the background to -1 and full
    ink to +1, then :func:`resize_digits` brings them to ``image_size`` (8: the digits as they are).
    """
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32)  # [N, 8, 8], 0..16, shipped with scikit-learn
    return resize_digits(torch.from_numpy(images)[:, None] / 16.0 * 2.0 - 1.0, image_size)


def resize_digits(x: Tensor, image_size: int) -> Tensor:
    """Digit images [N, 1, s, s] in [-1, 1] at ``image_size``: the bilinear resize (antialiased when
    shrinking) of :func:`load_digit_images`, clamped to [-1, 1]; a new tensor even at the same size.

    Samples of a model trained at another resolution go through it before they are compared with the
    real digits at ``image_size`` (the digits score), as the real digits themselves did.
    """
    x = x.to(torch.float32)
    if image_size != x.shape[-1]:
        size, shrink = (image_size, image_size), image_size < x.shape[-1]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return x.clamp(-1.0, 1.0).contiguous()


def load_digit_labels() -> np.ndarray:
    """The digit (0..9) of each image of :func:`load_digit_images`, int64 [N], in the same order."""
    from sklearn.datasets import load_digits

    return load_digits().target.astype(np.int64)


class TensorImageDataset(Dataset):
    """Items of a preprocessed float32 [N, C, H, W] tensor (optionally a subset of its rows)."""

    def __init__(self, images: Tensor, indices: np.ndarray | None = None) -> None:
        self.images = images if indices is None else images[torch.as_tensor(indices, dtype=torch.long)]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return self.images[index]


class DigitsDataModule(DiffusionDataModule):
    """1,797 real 8x8 handwritten digits (shipped inside scikit-learn), grayscale.

    Args:
        image_size: output resolution (bilinear from 8x8, :func:`resize_digits`; 8: as they are).
        val_fraction: share of the digits held out for validation (a fixed random subset chosen by
            ``split_seed``, see :func:`ddpm.data.splits.split_indices`); 0.1 -> 1,617 train / 180 val.
        split_seed: seed of the split (independent of ``seed``, which drives order and flips).
        random_flip: False by default: mirrored digits are not digits.
        Other arguments (``class_labels``: batches ``(x0, {"class_labels": digit})``): see
        :class:`~ddpm.data.base.DiffusionDataModule`.
    """

    def __init__(
        self,
        *,
        image_size: int = 16,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        random_flip: bool = False,
        **common: Any,
    ) -> None:
        super().__init__(random_flip=random_flip, **common)
        self.image_size = at_least("image_size", image_size, 1)
        num_val_items(1797, val_fraction)  # validate early
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)

    has_classes = True

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, self.image_size, self.image_size)

    @property
    def num_classes(self) -> int:
        return 10

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None and self.val_set is not None:
            return
        images = load_digit_images(self.image_size)
        n = images.shape[0]
        train_idx, val_idx = split_indices(n, num_val_items(n, self.val_fraction), self.split_seed)
        self.train_set = TensorImageDataset(images, train_idx)
        self.val_set = TensorImageDataset(images, val_idx)
        if self.class_labels:
            labels = load_digit_labels()
            self.train_set = LabelledDataset(self.train_set, labels[train_idx])
            self.val_set = LabelledDataset(self.val_set, labels[val_idx])
