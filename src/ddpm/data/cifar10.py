"""CIFAR-10 (50k train / 10k test, 32x32 RGB) from the official python pickles."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from ddpm.data.base import DiffusionDataModule, LabelledDataset
from ddpm.data.transforms import uint8_to_model
from ddpm.errors import DatasetNotFoundError

BASE_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)


def _get(entry: dict, key: str):
    """The official pickles have str keys under Python 2 and bytes keys under ``encoding="bytes"``."""
    return entry[key] if key in entry else entry[key.encode()]


def read_cifar_labels(folder: Path, files: tuple[str, ...]) -> np.ndarray:
    """The class (0..9) of each image of :func:`read_cifar_batches`, int64 [N], in the same order."""
    labels = []
    for name in files:
        with open(folder / name, "rb") as f:
            labels.append(np.asarray(_get(pickle.load(f, encoding="bytes"), "labels"), dtype=np.int64))
    return np.concatenate(labels)


def read_cifar_batches(folder: Path, files: tuple[str, ...]) -> np.ndarray:
    """Pixels of the official ``cifar-10-batches-py`` files as uint8 [N, 3, 32, 32] (CHW).

    Each file is a pickled dict whose ``data`` is uint8 [n, 3072]: per row, 1024 red, then 1024 green,
    then 1024 blue values, each plane row-major, so a reshape gives [n, 3, 32, 32] with no copy.
    """
    arrays = []
    for name in files:
        with open(folder / name, "rb") as f:
            entry = pickle.load(f, encoding="bytes")
        arrays.append(np.asarray(_get(entry, "data"), dtype=np.uint8).reshape(-1, 3, 32, 32))
    return np.ascontiguousarray(np.concatenate(arrays))


class CIFAR10Images(Dataset):
    """Items of a uint8 [N, 3, 32, 32] array as float32 [3, 32, 32] in [-1, 1] (no PIL round trip)."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return uint8_to_model(self.pixels[index])


class CIFAR10DataModule(DiffusionDataModule):
    """CIFAR-10 32x32: train on the 50,000 training images, validate on the 10,000 test images.

    Args:
        data_dir: directory holding (or receiving) ``cifar-10-batches-py/``.
        download: download it with ``torchvision.datasets.CIFAR10`` in ``prepare_data`` (run by
            Lightning on local rank 0) when the files are missing. Files already present are used as
            they are, without torchvision's MD5 check (so a pre-placed copy works offline).
        batch_size: 128, the paper's.
        Other arguments (``class_labels``: batches ``(x0, {"class_labels": class})``): see
        :class:`~ddpm.data.base.DiffusionDataModule`. The paper flips randomly.
    """

    def __init__(
        self,
        *,
        data_dir: str | Path = "data",
        download: bool = True,
        batch_size: int = 128,
        **common: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **common)
        self.data_dir = Path(data_dir)
        self.download = bool(download)

    has_classes = True

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, 32, 32)

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def folder(self) -> Path:
        return self.data_dir / BASE_FOLDER

    def _missing(self) -> list[str]:
        return [name for name in TRAIN_FILES + TEST_FILES if not (self.folder / name).is_file()]

    def _not_found(self, detail: str = "", fix: str = "set data.download=true or ") -> DatasetNotFoundError:
        return DatasetNotFoundError(
            f"CIFAR-10 not found in {self.data_dir}{detail}: {fix}place cifar-10-batches-py/ there "
            "(the python version from https://www.cs.toronto.edu/~kriz/cifar.html)"
        )

    def prepare_data(self) -> None:
        missing = self._missing()
        if not missing:
            return
        if not self.download:
            raise self._not_found(f" (missing {', '.join(missing)}) and data.download=false")
        import torchvision

        try:
            torchvision.datasets.CIFAR10(root=str(self.data_dir), train=True, download=True)
        except Exception as exc:
            reason = (str(exc).splitlines() or [""])[0]
            raise self._not_found(
                f" and the download failed ({type(exc).__name__}: {reason})",
                fix="retry with internet access or ",
            ) from exc

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None and self.val_set is not None:
            return
        if missing := self._missing():
            raise self._not_found(f" (missing {', '.join(missing)})")
        self.train_set = CIFAR10Images(read_cifar_batches(self.folder, TRAIN_FILES))
        self.val_set = CIFAR10Images(read_cifar_batches(self.folder, TEST_FILES))
        if self.class_labels:
            self.train_set = LabelledDataset(self.train_set, read_cifar_labels(self.folder, TRAIN_FILES))
            self.val_set = LabelledDataset(self.val_set, read_cifar_labels(self.folder, TEST_FILES))
