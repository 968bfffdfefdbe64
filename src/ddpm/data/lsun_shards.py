"""LSUN converted once into ready-sized uint8 shards, read without decoding a JPEG.

:func:`ddpm.data.prepare_lsun.convert_lmdb` runs the LSUN dataset's own preprocessing (StyleGAN2's
``create_lsun`` steps, :class:`~ddpm.data.lsun.LMDBImageDataset`) over an LMDB in key order and writes
the results with :class:`~ddpm.io.shards.ShardStore`: ``lsun_XXXXX.npz`` files of ``shard_size``
consecutive items, each with ``images`` (uint8 [n, 3, S, S]), ``keys`` (the LMDB keys) and ``bad``
(indices of bad images that were replaced by the next good one), plus the store's fingerprint
(resolution, preprocessing, the LMDB's keys). It resumes: finished shards are kept (each is read back
once to check it). ``lsun_shards.json``, written last, marks the conversion complete. Item ``i`` of the
shards is item ``i`` of the LMDB dataset, pixel for pixel.

:class:`ShardImageDataset` reads one item by seeking into the uncompressed NPZ member (numpy's
``savez`` stores its members uncompressed), so no shard is ever loaded whole. At 256x256 an image
takes 196,608 bytes: LSUN church (126k images) needs about 25 GB, bedroom (3M) about 600 GB.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from ddpm.data.transforms import uint8_to_model
from ddpm.errors import ConfigError, DatasetNotFoundError
from ddpm.io.shards import Arrays, ShardStore

MANIFEST = "lsun_shards.json"
FORMAT = "ddpm-lsun-shards/1"
PREPROCESS = "stylegan2 create_lsun: PIL decode, RGB, centre crop, PIL LANCZOS resize, uint8"
PREFIX = "lsun"
_LOCAL_HEADER = 30  # bytes of a zip local file header before its name and extra field


def fingerprint_of(keys: Any, resolution: int) -> str:
    """What the shards' contents depend on: format, preprocessing, resolution and the LMDB's keys."""
    digest = hashlib.sha1()
    for key in keys:
        digest.update(bytes(key) + b"\n")
    spec = {"format": FORMAT, "preprocess": PREPROCESS, "resolution": int(resolution)}
    return json.dumps({**spec, "keys_sha1": digest.hexdigest(), "num_keys": len(keys)}, sort_keys=True)


class ShardChecker:
    """A ShardStore ``check``: uint8 images of the right shape; replaced bad images only if allowed."""

    def __init__(self, resolution: int, allow_bad: bool) -> None:
        self.resolution = int(resolution)
        self.allow_bad = bool(allow_bad)

    def __call__(self, items: range, arrays: Arrays) -> None:
        images, bad = arrays["images"], arrays["bad"]
        side = self.resolution
        if images.dtype != np.uint8 or images.shape != (len(items), 3, side, side):
            raise ValueError(f"images are {images.dtype} {images.shape}")
        if len(arrays["keys"]) != len(items):
            raise ValueError(f"{len(arrays['keys'])} keys for {len(items)} items")
        if bad.size and not self.allow_bad:
            raise ValueError("it holds replaced bad images and --skip-bad-images is off")


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a finished conversion in ``folder``."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{folder} holds no finished LSUN conversion ({MANIFEST} is missing): run "
            f"`ddpm-prepare-lsun --lmdb <LMDB> --out {folder} --resolution <S>` (it resumes)"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise DatasetNotFoundError(f"{path} is not a {FORMAT} manifest: convert the LMDB again")
    return manifest


def _member_offset(path: Path, member: str) -> int:
    """Byte offset of the array data of an uncompressed ``.npy`` member of an NPZ file."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{path}: {member} is compressed")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(_LOCAL_HEADER)
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        f.seek(info.header_offset + _LOCAL_HEADER + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0
        if version != (1, 0):
            read_header = np.lib.format.read_array_header_2_0
        _, fortran, dtype = read_header(f)
        if fortran or dtype != np.uint8:
            raise ValueError(f"{path}: {member} is not a C-ordered uint8 array")
        return f.tell()


class ShardImageDataset(Dataset):
    """The images of a finished conversion: float32 [3, S, S] in [-1, 1], one file read per item.

    Args:
        folder: the ``--out`` folder of ``ddpm-prepare-lsun``.
        image_size: the expected resolution (a :class:`~ddpm.errors.ConfigError` if it differs).
        indices: the items of the conversion this dataset exposes, in order (all when None).
    """

    def __init__(
        self,
        folder: str | Path,
        image_size: int | None = None,
        indices: np.ndarray | None = None,
        manifest: dict[str, Any] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.manifest = manifest if manifest is not None else read_manifest(self.folder)
        self.image_size = int(self.manifest["resolution"])
        if image_size is not None and int(image_size) != self.image_size:
            raise ConfigError(
                f"the LSUN shards in {self.folder} are {self.image_size}x{self.image_size}, but "
                f"data.image_size={image_size}: convert at that size or set data.shards_dir"
            )
        self.store = ShardStore(
            self.folder,
            self.manifest["fingerprint"],
            int(self.manifest["num_items"]),
            int(self.manifest["shard_size"]),
            prefix=PREFIX,
        )
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self._offsets: dict[int, int] = {}

    def __len__(self) -> int:
        return self.store.num_items if self.indices is None else len(self.indices)

    def _offset(self, shard: int) -> int:
        if shard not in self._offsets:
            path = self.store.path(shard)
            try:
                with np.load(path, allow_pickle=False) as data:
                    fingerprint = str(data["fingerprint"])
                offset = _member_offset(path, "images.npy")
            except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
                raise DatasetNotFoundError(
                    f"LSUN shard {path} is missing or unreadable ({type(exc).__name__}): rerun "
                    "ddpm-prepare-lsun on it (it resumes)"
                ) from None
            if fingerprint != self.store.fingerprint:
                raise DatasetNotFoundError(
                    f"LSUN shard {path} was written by another conversion than {MANIFEST} says: "
                    "rerun ddpm-prepare-lsun on it"
                )
            self._offsets[shard] = offset
        return self._offsets[shard]

    def pixels(self, index: int) -> np.ndarray:
        """uint8 [3, S, S] of item ``index``."""
        item = int(index if self.indices is None else self.indices[index])
        shard, row = divmod(item, self.store.shard_size)
        nbytes = 3 * self.image_size * self.image_size
        with open(self.store.path(shard), "rb") as f:
            f.seek(self._offset(shard) + row * nbytes)
            data = f.read(nbytes)
        if len(data) != nbytes:
            raise DatasetNotFoundError(f"LSUN shard {self.store.path(shard)} is truncated: convert again")
        return np.frombuffer(data, dtype=np.uint8).reshape(3, self.image_size, self.image_size).copy()

    def __getitem__(self, index: int) -> Tensor:
        return uint8_to_model(self.pixels(index))

    def subset(self, indices: np.ndarray) -> ShardImageDataset:
        """The items at ``indices`` of this dataset."""
        base = np.asarray(indices, dtype=np.int64)
        if self.indices is not None:
            base = self.indices[base]
        return ShardImageDataset(self.folder, indices=base, manifest=self.manifest)
