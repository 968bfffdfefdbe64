"""The datasets an evaluation reads from a data module: the un-augmented split, and its name.

FID's reference statistics and the NLL are taken on a split of the training data module (``train`` or
``test``); :func:`describe_datamodule` names the dataset in cache keys, fingerprints and the paper's table.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from ddpm.utils.distributed import barrier, rank_and_world

SPLITS = ("train", "test")


def describe_datamodule(datamodule: Any) -> str:
    """A readable dataset name for cache keys: the class name plus its identifying settings."""
    name = type(datamodule).__name__.removesuffix("DataModule").lower()
    for attr in ("category", "image_size"):
        value = getattr(datamodule, attr, None)
        if value is not None:
            name += f"-{value}"
    return name


def split_dataset(datamodule: Any, split: str) -> Dataset:
    """The un-augmented dataset of a split: ``train`` -> ``train_set``; ``test`` -> ``val_set``
    (CIFAR-10's official 10k test set; the held-out split for the other datasets)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    attr = "train_set" if split == "train" else "val_set"
    if getattr(datamodule, attr, None) is None:
        if rank_and_world()[0] == 0 and hasattr(datamodule, "prepare_data"):
            datamodule.prepare_data()  # downloads (once, on rank 0)
        barrier()
        datamodule.setup("fit")
    dataset = getattr(datamodule, attr, None)
    if dataset is None:
        raise RuntimeError(f"{type(datamodule).__name__} has no {attr} after setup()")
    return dataset


__all__ = ["SPLITS", "describe_datamodule", "split_dataset"]
