"""LSUN scenes/objects (church_outdoor, bedroom, cat, ...) from the official LMDB files.

We read the LMDBs ourselves rather than with ``torchvision.datasets.LSUN``: torchvision lists the keys
once and pickles them to ``_cache_<path>`` in the *current working directory*, which litters the run
directory (Hydra) and is shared, unsafely, between concurrent jobs.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ddpm.data.base import DiffusionDataModule
from ddpm.data.splits import split_indices
from ddpm.data.transforms import pil_to_model
from ddpm.errors import ConfigError, DatasetNotFoundError

LSUN_HELP = (
    "get it with the official script of github.com/fyu/lsun (`python download.py -c {category}`; "
    "object categories such as cat are zips linked from that repository) and unzip it into {root}"
)


def _open_env(path: str):
    import lmdb

    return lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False, max_readers=1)


# py-lmdb refuses to open one environment twice in a process, and LSUN's train and held-out val sets
# share one: environments are shared per (process, path), and only this cache holds them. A forked
# worker drops the inherited handles (they must not be used after fork, and while one is alive
# py-lmdb refuses to open the path again) and opens its own.
_ENVS: dict[str, object] = {}
_ENVS_PID: int | None = None


def shared_env(path: str):
    """The read-only environment of ``path`` for this process, opened on first use."""
    global _ENVS_PID
    if os.getpid() != _ENVS_PID:  # forked: the parent's handles must not be used here
        _ENVS.clear()
        _ENVS_PID = os.getpid()
    key = os.path.realpath(path)
    if key not in _ENVS:
        _ENVS[key] = _open_env(key)
    return _ENVS[key]


def close_env(path: str) -> None:
    """Close this process's environment of ``path``, if open."""
    env = _ENVS.pop(os.path.realpath(path), None) if os.getpid() == _ENVS_PID else None
    if env is not None:
        env.close()


def list_lmdb_keys(path: str | Path) -> np.ndarray | list[bytes]:
    """All keys of an LMDB in its (sorted) key order, with one cursor pass, values not read.

    Returned as a fixed-width bytes NumPy array (compact, and no per-object refcounts for forked
    workers to copy); as a list if some key ends with a NUL byte (NumPy would strip it).
    """
    with shared_env(str(path)).begin(write=False) as txn:
        keys = list(txn.cursor().iternext(keys=True, values=False))
    if any(k.endswith(b"\x00") for k in keys) or not keys:
        return keys
    return np.array(keys, dtype=f"S{max(len(k) for k in keys)}")


class LMDBImageDataset(Dataset):
    """Images stored as encoded bytes (JPEG, WebP, PNG) in an LMDB, as in the official LSUN release.

    Keys are listed once at construction (or passed in). The environment is opened lazily, read-only,
    without locking or readahead, once per process (:func:`shared_env`): an open LMDB environment
    cannot be pickled to, nor shared with, DataLoader workers. Items: RGB, center crop, bicubic resize
    to ``image_size``, float32 [3, S, S] in [-1, 1].
    """

    def __init__(
        self, path: str | Path, image_size: int, keys: np.ndarray | list[bytes] | None = None
    ) -> None:
        self.path = str(path)
        self.image_size = int(image_size)
        self.keys = list_lmdb_keys(self.path) if keys is None else keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> Tensor:
        key = bytes(self.keys[index])
        with shared_env(self.path).begin(write=False) as txn:
            value = txn.get(key)
            if value is None:
                raise KeyError(f"key {key!r} not found in {self.path}")
            data = bytes(value)
        with Image.open(io.BytesIO(data)) as image:
            return pil_to_model(image, self.image_size, channels=3)

    def subset(self, indices: np.ndarray) -> LMDBImageDataset:
        """The same LMDB restricted to the keys at ``indices``."""
        keys = self.keys[indices] if isinstance(self.keys, np.ndarray) else [self.keys[i] for i in indices]
        return LMDBImageDataset(self.path, self.image_size, keys=keys)

    def close(self) -> None:
        """Close the environment in this process (reopened on the next access)."""
        close_env(self.path)


def lsun_paths(root: str | Path, category: str) -> tuple[list[Path], Path]:
    """Candidate train LMDB directories and the val LMDB directory of ``category`` under ``root``.

    The scene release unzips to ``{category}_train_lmdb/`` and ``{category}_val_lmdb/``; the object
    release (e.g. cat) to a single ``{category}/`` LMDB without a validation split.
    """
    root = Path(root)
    return [root / f"{category}_train_lmdb", root / category], root / f"{category}_val_lmdb"


def _is_lmdb(path: Path) -> bool:
    return (path / "data.mdb").is_file()


class LSUNDataModule(DiffusionDataModule):
    """LSUN at ``image_size`` (256 in the paper): center crop + bicubic resize, x/127.5 - 1.

    Args:
        root: directory holding ``{category}_train_lmdb/`` and ``{category}_val_lmdb/`` (the official
            download layout), or ``{category}/`` for the object categories.
        category: e.g. ``church_outdoor``, ``bedroom``, ``cat``.
        image_size: output resolution.
        val_holdout: when there is no ``{category}_val_lmdb`` (e.g. cat), this many training images
            (at most a tenth of them) are held out for validation and removed from training: a fixed
            random subset (:func:`ddpm.data.splits.split_indices` with ``split_seed``). 300 matches
            the size of the official scene validation sets.
        split_seed: seed of that held-out split.
        random_flip: True for church/bedroom as in the paper; the paper does not flip LSUN cat.
        Other arguments: see :class:`~ddpm.data.base.DiffusionDataModule`.
    """

    def __init__(
        self,
        root: str | Path = "data/lsun",
        category: str = "church_outdoor",
        batch_size: int = 64,
        image_size: int = 256,
        val_holdout: int = 300,
        split_seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        random_flip: bool = True,
        seed: int = 0,
        val_batch_size: int | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers,
            random_flip=random_flip,
            seed=seed,
            val_batch_size=val_batch_size,
        )
        if image_size < 1:
            raise ConfigError(f"data.image_size must be >= 1, got {image_size}")
        if val_holdout < 1:
            raise ConfigError(f"data.val_holdout must be >= 1, got {val_holdout}")
        self.root = Path(root)
        self.category = str(category)
        self.image_size = int(image_size)
        self.val_holdout = int(val_holdout)
        self.split_seed = int(split_seed)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    def _train_lmdb(self) -> Path:
        candidates, _ = lsun_paths(self.root, self.category)
        for path in candidates:
            if _is_lmdb(path):
                return path
        raise DatasetNotFoundError(
            f"LSUN {self.category} not found: {candidates[0]} (an LMDB directory with data.mdb) is missing; "
            + LSUN_HELP.format(category=self.category, root=self.root)
        )

    def prepare_data(self) -> None:
        self._train_lmdb()  # fail early, in one line

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None and self.val_set is not None:
            return
        train = LMDBImageDataset(self._train_lmdb(), self.image_size)
        _, val_path = lsun_paths(self.root, self.category)
        if _is_lmdb(val_path):
            self.train_set, self.val_set = train, LMDBImageDataset(val_path, self.image_size)
            return
        n = len(train)
        if n < 2:
            raise DatasetNotFoundError(
                f"LSUN {self.category} in {self.root} holds {n} image(s): too few to train"
            )
        n_val = min(self.val_holdout, max(1, n // 10))
        train_idx, val_idx = split_indices(n, n_val, self.split_seed)
        self.train_set, self.val_set = train.subset(train_idx), train.subset(val_idx)

    def teardown(self, stage: str | None = None) -> None:
        for dataset in (self.train_set, self.val_set):
            if isinstance(dataset, LMDBImageDataset):
                dataset.close()
