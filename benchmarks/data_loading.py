"""Images/s of the LSUN DataModule's train loader: decoding the LMDB vs reading the ready-sized shards.

Builds a synthetic LSUN LMDB in a temporary folder (``--images`` JPEGs of ``--height`` x ``--width``,
like LSUN's 256-pixel short side, smooth content so the JPEGs have a realistic size), converts it with
``ddpm.data.prepare_lsun`` (timed too), then iterates one epoch of ``LSUNDataModule.train_dataloader()``
from each source, in interleaved rounds so machine noise hits both alike. Prints one JSON object with
the median images/s of each and their ratio, all measured in this run:

    python benchmarks/data_loading.py --images 256 --resolution 256 --workers 0 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.data.fakes: the fake LMDB writer

from ddpm.data import LSUNDataModule
from ddpm.data.prepare_lsun import convert_lmdb
from tests.data.fakes import write_fake_lsun_lmdb


def smooth_images(n: int, height: int, width: int, seed: int = 0) -> list[Image.Image]:
    """Upsampled low-resolution noise plus a little grain: JPEG sizes like photographs'."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        coarse = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
        grain = rng.integers(-8, 9, size=base.shape)
        images.append(Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8)))
    return images


def epoch_images_per_second(dm: LSUNDataModule) -> float:
    """One full epoch of the train loader (workers started inside the timing)."""
    start = time.perf_counter()
    count = sum(batch.shape[0] for batch in dm.train_dataloader())
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=341)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lmdb = write_fake_lsun_lmdb(
            root / "church_outdoor_train_lmdb", images=smooth_images(args.images, args.height, args.width)
        )
        jpeg_bytes = sum(f.stat().st_size for f in lmdb.iterdir())
        start = time.perf_counter()
        convert_lmdb(lmdb, root / "shards", resolution=args.resolution, shard_size=100, progress=False)
        convert_ips = args.images / (time.perf_counter() - start)
        common = {"root": root, "image_size": args.resolution, "batch_size": args.batch, "random_flip": False}
        modules = {
            "lmdb": LSUNDataModule(**common, num_workers=args.workers, shards_dir=None),
            "shards": LSUNDataModule(**common, num_workers=args.workers, shards_dir=str(root / "shards")),
        }
        rates: dict[str, list[float]] = {name: [] for name in modules}
        for _ in range(args.rounds):
            for name, dm in modules.items():
                rates[name].append(epoch_images_per_second(dm))
    lmdb_ips, shard_ips = (statistics.median(rates[name]) for name in ("lmdb", "shards"))
    print(
        json.dumps(
            {
                "images": args.images,
                "source_hxw": [args.height, args.width],
                "resolution": args.resolution,
                "batch": args.batch,
                "workers": args.workers,
                "rounds": args.rounds,
                "mean_jpeg_kib": round(jpeg_bytes / args.images / 1024, 1),
                "lmdb_images_per_s": round(lmdb_ips, 1),
                "shards_images_per_s": round(shard_ips, 1),
                "shards_over_lmdb": round(shard_ips / lmdb_ips, 1),
                "convert_images_per_s": round(convert_ips, 1),
                "per_round": {name: [round(r, 1) for r in values] for name, values in rates.items()},
                "cpu": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
