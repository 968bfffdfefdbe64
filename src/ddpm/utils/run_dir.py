"""``runs/latest``: a link to the newest finished run directory of a task, so commands can name it
(``ddpm-sample ckpt_path=logs/quickstart/runs/latest/checkpoints/last.ckpt``), as W&B's ``latest-run``;
``multiruns/latest``: the newest finished sweep of a task (moved by the sweep summary's callback).

The entry points move it when a run has finished: a run started from ``.../runs/latest/...`` (fine-tuning,
sampling) reads the run that was latest when it started, not its own empty directory."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_only

LATEST = "latest"


def link_latest(run_dir: str | Path, parent: str = "runs") -> Path | None:
    """Point ``<parent>/latest`` at ``run_dir`` when it is a directory of ``.../<parent>/<name>`` (a single
    run's, or a sweep's with ``parent="multiruns"``); replaced atomically, on global rank 0 only. Returns
    the link, or None where none is made."""
    run_dir = Path(run_dir)
    if run_dir.parent.name != parent or run_dir.name == LATEST or getattr(rank_zero_only, "rank", 0) != 0:
        return None
    link = run_dir.parent / LATEST
    tmp = run_dir.parent / f".{LATEST}.{os.getpid()}"
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(run_dir.name)  # relative: the tree can move
        os.replace(tmp, link)
    except OSError:  # no symlinks here (some filesystems): the run itself is unaffected
        with contextlib.suppress(OSError):
            tmp.unlink()
        return None
    return link


__all__ = ["LATEST", "link_latest"]
