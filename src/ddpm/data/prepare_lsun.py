"""One-off conversion of an LSUN LMDB into ready-sized uint8 shards (see :mod:`ddpm.data.lsun_shards`);
its command line is ``ddpm-prepare-lsun`` (:mod:`ddpm.cli.ddpm_prepare_lsun`).

Interrupted, it resumes where it stopped (finished shards are kept). A truncated or corrupt image stops
it with one ``error:`` line naming the key (exit code 2), as does any other bad input; with
``--skip-bad-images`` the image is replaced by the next good one, exactly as the DataModule's
``data.skip_bad_images=true`` does, and listed in ``lsun_shards.json``. Then train with
``data.shards_dir=data/lsun/church_outdoor_256`` (found by itself under ``data.root`` at that name).
"""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np

from ddpm.data.bad_images import BadImageError, BadImagePolicy
from ddpm.data.lsun import LMDBImageDataset, list_lmdb_keys
from ddpm.data.lsun_shards import FORMAT, MANIFEST, PREFIX, ShardChecker, fingerprint_of
from ddpm.errors import ConfigError, DatasetNotFoundError
from ddpm.io.atomic import atomic_write_json
from ddpm.io.shards import Arrays, ShardStore
from ddpm.utils.progress import progress_bar

log = logging.getLogger(__name__)
_WORKER: dict[str, Any] = {}


def shard_arrays(dataset: LMDBImageDataset, items: range) -> Arrays:
    """``images``, ``keys`` and ``bad`` (replaced items) of the items ``items`` of ``dataset``."""
    images, bad = [], []
    for index in items:
        try:
            images.append(dataset.decode(index))
        except BadImageError:
            if not dataset.bad_images.skip:
                raise
            bad.append(index)
            images.append(dataset.pixels(index))
    return {
        "images": np.stack(images),
        "keys": np.array([bytes(dataset.keys[i]) for i in items]),
        "bad": np.array(bad, dtype=np.int64),
    }


def _write_shard(store: ShardStore, dataset: LMDBImageDataset, shard: int) -> int:
    store.write(shard, shard_arrays(dataset, store.ranges[shard]))
    return len(store.ranges[shard])


def _init_worker(store: ShardStore, dataset: LMDBImageDataset) -> None:
    _WORKER["store"], _WORKER["dataset"] = store, dataset


def _write_shard_in_worker(shard: int) -> int:
    return _write_shard(_WORKER["store"], _WORKER["dataset"], shard)


def _write_missing(store: ShardStore, dataset: LMDBImageDataset, workers: int, progress: bool) -> None:
    todo = store.missing(range(store.num_shards))
    bar = progress_bar(enabled=progress, description="LSUN -> shards", total=store.num_items)
    bar.update(store.num_items - sum(len(store.ranges[s]) for s in todo))
    try:
        if workers <= 1 or len(todo) <= 1:
            for shard in todo:
                bar.update(_write_shard(store, dataset, shard))
            return
        dataset.close()  # the pool's processes open their own environments
        with multiprocessing.Pool(workers, initializer=_init_worker, initargs=(store, dataset)) as pool:
            for done in pool.imap_unordered(_write_shard_in_worker, todo):
                bar.update(done)
    finally:
        bar.close()


def _bad_keys(store: ShardStore) -> list[str]:
    keys: list[str] = []
    for shard in range(store.num_shards):
        with np.load(store.path(shard), allow_pickle=False) as data:
            bad = data["bad"]
            if bad.size:
                rows = bad - store.ranges[shard].start
                keys += [k.decode("ascii", errors="backslashreplace") for k in data["keys"][rows]]
    return keys


def _check_args(lmdb_path: Path, out: Path, resolution: int, shard_size: int) -> None:
    if not (lmdb_path / "data.mdb").is_file():
        raise DatasetNotFoundError(
            f"{lmdb_path} is not an LMDB directory (no data.mdb): pass an unzipped LSUN LMDB, "
            "e.g. --lmdb data/lsun/church_outdoor_train_lmdb"
        )
    if resolution < 1 or shard_size < 1:
        raise ConfigError(f"--resolution and --shard-size must be >= 1, got {resolution}, {shard_size}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory: pick another --out")


def convert_lmdb(
    lmdb_path: str | Path,
    out: str | Path,
    *,
    resolution: int = 256,
    shard_size: int = 1000,
    skip_bad_images: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Convert ``lmdb_path`` into shards in ``out`` (resuming); returns the manifest written last."""
    lmdb_path, out = Path(lmdb_path), Path(out)
    _check_args(lmdb_path, out, resolution, shard_size)
    keys = list_lmdb_keys(lmdb_path)
    if len(keys) == 0:
        raise DatasetNotFoundError(f"the LMDB {lmdb_path} holds no images")
    fingerprint = fingerprint_of(keys, resolution)
    check = ShardChecker(resolution, allow_bad=skip_bad_images)
    store = ShardStore(out, fingerprint, len(keys), shard_size, prefix=PREFIX, check=check)
    (out / MANIFEST).unlink(missing_ok=True)
    policy = BadImagePolicy(skip=skip_bad_images, what=f"LMDB {lmdb_path}")
    dataset = LMDBImageDataset(lmdb_path, resolution, keys=keys, bad_images=policy)
    _write_missing(store, dataset, workers, progress)
    manifest = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "resolution": int(resolution),
        "num_items": len(keys),
        "shard_size": int(shard_size),
        "num_shards": store.num_shards,
        "source": str(lmdb_path.resolve()),
        "bad_keys": _bad_keys(store),
    }
    atomic_write_json(out / MANIFEST, manifest)
    return manifest
