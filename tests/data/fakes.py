"""Writers of tiny fake datasets in the official on-disk formats, for tests (no download).

Plain functions, importable by any test:

* :func:`write_fake_cifar10` -> ``root/cifar-10-batches-py/`` (the python pickle release);
* :func:`write_fake_lsun_lmdb` -> an LMDB directory as in the LSUN release;
* :func:`write_fake_image_folder` -> a folder of PNGs;
* :func:`truncate_lmdb_value` -> cut an image of such an LMDB short (a corrupt JPEG).
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def _dump(obj: object, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_fake_cifar10(root: Path, n_train_per_batch: int = 10, n_test: int = 10, seed: int = 0) -> Path:
    """Write a fake ``root/cifar-10-batches-py/`` in the official python format; returns ``root``.

    ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` are pickled dicts with ``b"data"`` (uint8
    [n, 3072]: 1024 red, 1024 green, 1024 blue values per row, each 32x32 plane row-major),
    ``b"labels"`` (list of int), ``b"batch_label"`` and ``b"filenames"``; ``batches.meta`` holds
    ``b"label_names"``, ``b"num_cases_per_batch"`` and ``b"num_vis"``. Pixels are uniform random
    uint8 from ``seed``. Pass the returned ``root`` as ``CIFAR10DataModule(data_dir=...)``. (The files
    do not match torchvision's MD5 sums, so ``torchvision.datasets.CIFAR10`` itself refuses them.)
    """
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = [(f"data_batch_{i}", n_train_per_batch, f"training batch {i} of 5") for i in range(1, 6)]
    splits.append(("test_batch", n_test, "testing batch 1 of 1"))
    for name, n, label in splits:
        entry = {
            b"batch_label": label.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"filenames": [f"fake_{name}_{i:05d}.png".encode() for i in range(n)],
        }
        _dump(entry, folder / name)
    meta = {
        b"num_cases_per_batch": n_train_per_batch,
        b"label_names": [c.encode() for c in CIFAR10_CLASSES],
        b"num_vis": 3072,
    }
    _dump(meta, folder / "batches.meta")
    return root


def _random_image(rng: np.random.Generator, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    width, height = size
    channels = 1 if mode == "L" else 3
    array = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return Image.fromarray(array[:, :, 0] if channels == 1 else array, mode=mode)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    kwargs = {"quality": 95} if fmt.upper() in ("JPEG", "WEBP") else {}
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def write_fake_lsun_lmdb(
    path: Path,
    n: int = 10,
    size: tuple[int, int] = (40, 30),
    seed: int = 0,
    fmt: str = "JPEG",
    images: Sequence[Image.Image] | None = None,
) -> Path:
    """Write an LMDB directory as in the official LSUN release; returns ``path``.

    Keys are 40-character hex ids as bytes (SHA-1 digests, like LSUN's); values are the encoded image
    bytes (``fmt``: JPEG like the scene categories, or WEBP like the object categories). ``size`` is
    (width, height) of the random images; ``images`` replaces them with the given PIL images.
    For a DataModule, name the directory ``{root}/{category}_train_lmdb`` (or ``_val_lmdb``).
    """
    import lmdb

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if images is None:
        images = [_random_image(rng, size) for _ in range(n)]
    values = [_encode(image.convert("RGB"), fmt) for image in images]
    env = lmdb.open(str(path), map_size=max(1 << 20, 4 * sum(len(v) for v in values)), subdir=True)
    try:
        with env.begin(write=True) as txn:
            for i, value in enumerate(values):
                key = hashlib.sha1(f"{seed}-{i}".encode()).hexdigest().encode()
                txn.put(key, value)
    finally:
        env.close()
    return path


def write_fake_image_folder(
    path: Path, n: int = 8, size: tuple[int, int] = (24, 20), seed: int = 0, nested: bool = False
) -> Path:
    """Write ``n`` random RGB PNGs of ``size`` (width, height) into ``path``; returns ``path``.

    With ``nested=True`` every other image goes into a ``sub/`` folder (to exercise recursion).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        folder = path / "sub" if nested and i % 2 else path
        folder.mkdir(exist_ok=True)
        _random_image(rng, size).save(folder / f"img_{i:04d}.png")
    return path


def truncate_lmdb_value(path: Path, index: int, keep: float = 0.5) -> bytes:
    """Keep only the first ``keep`` share of the bytes of the ``index``-th key (sorted); returns the key."""
    import lmdb

    env = lmdb.open(str(path), subdir=True)
    try:
        with env.begin(write=True) as txn:
            key, value = list(txn.cursor())[index]
            txn.put(key, bytes(value)[: int(len(value) * keep)])
    finally:
        env.close()
    return bytes(key)
