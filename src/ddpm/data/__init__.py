"""LightningDataModules: batches are float32 [B, C, H, W] in [-1, 1], without labels; with
``data.class_labels=true`` (digits, CIFAR-10, image folders with class subfolders) they are pairs
``(x0, {"class_labels": int64 [B]})`` for class-conditional training.

* :class:`DigitsDataModule`: scikit-learn's 8x8 digits, embedded, no download (the default).
* :class:`CIFAR10DataModule`: CIFAR-10 32x32 (downloads on demand).
* :class:`LSUNDataModule`: LSUN categories from the official LMDBs, preprocessed as StyleGAN2's
  ``create_lsun`` (the paper's data), or from ready-sized shards (``ddpm-prepare-lsun``).
* :class:`ImageFolderDataModule`: a directory of your own images.

All share :class:`DiffusionDataModule`: the keys every dataset has (batch size, workers, seed, flips, class
labels), a deterministic, resumable, rank-sharded data order and a random horizontal flip applied to whole
batches on the device (see :mod:`ddpm.data.base`); each takes only its own keys. Bad image files:
:mod:`ddpm.data.bad_images`.
"""

from ddpm.data.base import DiffusionDataModule
from ddpm.data.cifar10 import CIFAR10DataModule
from ddpm.data.digits import DigitsDataModule
from ddpm.data.image_folder import ImageFolderDataModule
from ddpm.data.loaders import ResumableDataLoader, ResumableDistributedSampler
from ddpm.data.lsun import LMDBImageDataset, LSUNDataModule
from ddpm.data.lsun_shards import ShardImageDataset

__all__ = [
    "CIFAR10DataModule",
    "DiffusionDataModule",
    "DigitsDataModule",
    "ImageFolderDataModule",
    "LMDBImageDataset",
    "LSUNDataModule",
    "ResumableDataLoader",
    "ResumableDistributedSampler",
    "ShardImageDataset",
]
