"""``ddpm-prepare-lsun``: convert an LSUN LMDB into ready-sized uint8 shards, once, before training.

    ddpm-prepare-lsun --lmdb data/lsun/church_outdoor_train_lmdb \\
        --out data/lsun/church_outdoor_256 --resolution 256 --workers 8

The work is :func:`ddpm.data.prepare_lsun.convert_lmdb` (resumable; StyleGAN2's ``create_lsun`` steps).
Bad input prints one ``error:`` line on stderr and exits with code 2, as every entry point does.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ddpm.cli.task_wrapper import run_task
from ddpm.data.prepare_lsun import convert_lmdb


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddpm-prepare-lsun",
        description="Convert an LSUN LMDB into ready-sized uint8 shards (StyleGAN2 create_lsun steps).",
    )
    parser.add_argument("--lmdb", required=True, help="e.g. data/lsun/church_outdoor_train_lmdb")
    parser.add_argument("--out", required=True, help="output folder, e.g. data/lsun/church_outdoor_256")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--shard-size", type=int, default=1000, help="images per shard file")
    parser.add_argument("--workers", type=int, default=1, help="processes decoding in parallel")
    parser.add_argument("--skip-bad-images", action="store_true", help="replace a bad image by the next one")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _task(cfg: DictConfig) -> dict[str, Any]:
    manifest = convert_lmdb(
        cfg.lmdb,
        cfg.out,
        resolution=cfg.resolution,
        shard_size=cfg.shard_size,
        skip_bad_images=cfg.skip_bad_images,
        workers=cfg.workers,
        progress=not cfg.no_progress,
    )
    bad = manifest["bad_keys"]
    side = manifest["resolution"]
    replaced = f"; {len(bad)} bad image(s) replaced" if bad else ""
    shards = f"{manifest['num_shards']} shards in {cfg.out}"
    print(f"{manifest['num_items']} images at {side}x{side} in {shards}{replaced}")
    return manifest


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: bad input prints one ``error:`` line on stderr and exits with code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = _parser().parse_args(argv)
    run_task(_task, OmegaConf.create(vars(args)))


if __name__ == "__main__":
    main(sys.argv[1:])
