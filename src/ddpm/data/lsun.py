"""LSUN scenes/objects (church_outdoor, bedroom, cat, ...) from the official LMDB files.

We read the LMDBs ourselves rather than with ``torchvision.datasets.LSUN``: torchvision lists the keys
once and pickles them to ``_cache_<path>`` in the *current working directory*, which litters the run
directory (Hydra) and is shared, unsafely, between concurrent jobs.
"""

from __future__ import annotations

import copy
import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ddpm.data.bad_images import SKIP_FIX, BadImagePolicy, report_bad_images, undecodable
from ddpm.data.base import DiffusionDataModule, at_least
from ddpm.data.lsun_shards import MANIFEST, ShardImageDataset, read_manifest
from ddpm.data.splits import split_indices
from ddpm.data.transforms import create_lsun_pixels, uint8_to_model
from ddpm.errors import DatasetNotFoundError

log = logging.getLogger(__name__)
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


def _key_name(key: bytes) -> str:
    return key.decode("ascii", errors="backslashreplace")


def decode_create_lsun(data: bytes, size: int, name: str) -> np.ndarray:
    """Encoded image bytes -> uint8 [3, size, size] by StyleGAN2's ``create_lsun`` steps.

    A truncated or corrupt image raises :class:`~ddpm.data.bad_images.BadImageError` naming ``name``.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = create_lsun_pixels(image, size)
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on bad bytes
        raise undecodable(name, exc, f"{SKIP_FIX} (prepare_lsun: --skip-bad-images)") from None
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


class LMDBImageDataset(Dataset):
    """Images stored as encoded bytes (JPEG, WebP, PNG) in an LMDB, as in the official LSUN release.

    Keys are listed once at construction (or passed in). The environment is opened lazily, read-only,
    without locking or readahead, once per process (:func:`shared_env`): an open LMDB environment
    cannot be pickled to, nor shared with, DataLoader workers. Items: StyleGAN2's ``create_lsun``
    preprocessing (:func:`~ddpm.data.transforms.create_lsun_pixels`: centre crop, Lanczos resize to
    ``image_size``, uint8), then float32 [3, S, S] in [-1, 1]. A bad image raises or is replaced as
    ``bad_images`` says (:mod:`ddpm.data.bad_images`; raise when None).
    """

    def __init__(
        self,
        path: str | Path,
        image_size: int,
        keys: np.ndarray | list[bytes] | None = None,
        bad_images: BadImagePolicy | None = None,
    ) -> None:
        self.path = str(path)
        self.image_size = int(image_size)
        self.all_keys = list_lmdb_keys(self.path) if keys is None else keys
        self.positions: np.ndarray | None = None  # a subset's items, as positions in all_keys
        self.bad_images = bad_images or BadImagePolicy(skip=False, what=f"LMDB {self.path}")

    @property
    def keys(self) -> np.ndarray | list[bytes]:
        """The keys of this dataset's items, in order."""
        if self.positions is None:
            return self.all_keys
        if isinstance(self.all_keys, np.ndarray):
            return self.all_keys[self.positions]
        return [self.all_keys[i] for i in self.positions]

    def __len__(self) -> int:
        return len(self.all_keys) if self.positions is None else len(self.positions)

    def _position(self, index: int) -> int:
        return int(index if self.positions is None else self.positions[index])

    def _decode_at(self, position: int) -> np.ndarray:
        key = bytes(self.all_keys[position])
        with shared_env(self.path).begin(write=False) as txn:
            value = txn.get(key)
            if value is None:
                raise KeyError(f"key {key!r} not found in {self.path}")
            data = bytes(value)
        return decode_create_lsun(data, self.image_size, f"LSUN image key {_key_name(key)} in {self.path}")

    def decode(self, index: int) -> np.ndarray:
        """uint8 [3, S, S] of item ``index``; :class:`BadImageError` if it cannot be decoded."""
        return self._decode_at(self._position(index))

    def pixels(self, index: int) -> np.ndarray:
        """uint8 [3, S, S] of item ``index``, a bad image handled by the policy.

        A bad image is replaced by the next good one in the *whole* LMDB's key order, also in a subset,
        so that a subset gives the same pixels as the same subset of the converted shards.
        """
        return self.bad_images.load(self._position(index), len(self.all_keys), self._decode_at)

    def __getitem__(self, index: int) -> Tensor:
        return uint8_to_model(self.pixels(index))

    def subset(self, indices: np.ndarray, bad_images: BadImagePolicy | None = None) -> LMDBImageDataset:
        """The items at ``indices`` of this dataset (with this policy unless one is given)."""
        subset = copy.copy(self)
        positions = np.asarray(indices, dtype=np.int64)
        subset.positions = positions if self.positions is None else self.positions[positions]
        subset.bad_images = bad_images or self.bad_images
        return subset

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
    """LSUN at ``image_size`` (256 in the paper), preprocessed as the paper's data was, x/127.5 - 1.

    The paper's LSUN data came from StyleGAN2's ``dataset_tool.py create_lsun`` (centre crop, then PIL
    ``ANTIALIAS``, i.e. Lanczos, resize to 256, uint8), so items follow exactly those steps
    (:func:`~ddpm.data.transforms.create_lsun_pixels`): FIDs are then comparable with the paper's
    7.89 (church) and 4.90 (bedroom), which a bicubic resize would shift. Training images are read
    from ready-sized uint8 shards when there are any (``ddpm-prepare-lsun``; the same
    pixels, no JPEG decoding), else decoded from the LMDB.

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
        shards_dir: the converted training LMDB; ``"auto"`` uses ``{root}/{category}_{image_size}``
            if a finished conversion is there, None never uses shards.
        skip_bad_images: replace a truncated or corrupt image by the next good one and count it,
            instead of stopping with an error naming its key (:mod:`ddpm.data.bad_images`).
        random_flip: True for church/bedroom as in the paper; the paper does not flip LSUN cat.
        Other arguments: see :class:`~ddpm.data.base.DiffusionDataModule`.
    """

    def __init__(
        self,
        root: str | Path = "data/lsun",
        category: str = "church_outdoor",
        *,
        image_size: int = 256,
        val_holdout: int = 300,
        split_seed: int = 0,
        shards_dir: str | Path | None = "auto",
        skip_bad_images: bool = False,
        **common: Any,
    ) -> None:
        super().__init__(**common)  # class_labels: LSUN has none, true is refused in one line
        self.image_size = at_least("image_size", image_size, 1)
        self.val_holdout = at_least("val_holdout", val_holdout, 1)
        self.root = Path(root)
        self.category = str(category)
        self.split_seed = int(split_seed)
        self.shards_dir = None if shards_dir in (None, "", "none", "null") else str(shards_dir)
        self.skip_bad_images = bool(skip_bad_images)

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

    def shards_path(self) -> Path | None:
        """The folder of converted training shards to read, or None (decode the LMDB)."""
        if self.shards_dir is None:
            return None
        if self.shards_dir == "auto":
            candidate = self.root / f"{self.category}_{self.image_size}"
            return candidate if (candidate / MANIFEST).is_file() else None
        read_manifest(self.shards_dir)  # a clear error if the conversion is missing or unfinished
        return Path(self.shards_dir)

    def prepare_data(self) -> None:
        if self.shards_path() is None:
            self._train_lmdb()  # fail early, in one line

    def _policy(self, split: str) -> BadImagePolicy:
        return BadImagePolicy(self.skip_bad_images, what=f"LSUN {self.category} {split}")

    def _train_source(self) -> LMDBImageDataset | ShardImageDataset:
        shards = self.shards_path()
        if shards is None:
            return LMDBImageDataset(self._train_lmdb(), self.image_size, bad_images=self._policy("train"))
        dataset = ShardImageDataset(shards, self.image_size)
        bad = dataset.manifest.get("bad_keys") or []
        source = Path(str(dataset.manifest.get("source", ""))).name
        if not source.startswith(self.category):
            log.warning("LSUN %s: the shards in %s were converted from %s", self.category, shards, source)
        log.info("LSUN %s: reading the ready-sized shards in %s", self.category, shards)
        if bad:
            log.warning("LSUN shards in %s: %d bad image(s) were replaced at conversion", shards, len(bad))
        return dataset

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None and self.val_set is not None:
            return
        train = self._train_source()
        _, val_path = lsun_paths(self.root, self.category)
        if _is_lmdb(val_path):
            val = LMDBImageDataset(val_path, self.image_size, bad_images=self._policy("val"))
            self.train_set, self.val_set = train, val
            return
        n = len(train)
        if n < 2:
            raise DatasetNotFoundError(
                f"LSUN {self.category} in {self.root} holds {n} image(s): too few to train"
            )
        n_val = min(self.val_holdout, max(1, n // 10))
        train_idx, val_idx = split_indices(n, n_val, self.split_seed)
        self.train_set = train.subset(train_idx)
        if isinstance(train, LMDBImageDataset):
            self.val_set = train.subset(val_idx, bad_images=self._policy("val"))
        else:
            self.val_set = train.subset(val_idx)

    def teardown(self, stage: str | None = None) -> None:
        for dataset in (self.train_set, self.val_set):
            report_bad_images(dataset, "since the last report")
            if isinstance(dataset, LMDBImageDataset):
                dataset.close()
