"""Continuing a run in its own directory (``resume=auto``): its newest complete checkpoint, checked to be
the same run.

A job keeps one run directory for its whole life (``runs/slurm-<job id>`` inside SLURM, or a fixed
``hydra.run.dir``), so the same command launched again, by hand after a crash or by SLURM after a
requeue, finds the checkpoints of its earlier launches and continues the newest one that reads back
completely. A directory holding another run (a different model, diffusion, loss, optimiser, data or
seed) is never continued nor written into.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ddpm.errors import CheckpointError, ConfigError, RunDirectoryExistsError
from ddpm.io.checkpoint_file import read_lightning_checkpoint

log = logging.getLogger(__name__)

RESUME_MODES = ("auto", "never")
# Where a run's checkpoints are: ModelCheckpoint's and the preemption checkpoint, and Lightning's own
# SLURM requeue checkpoints (hpc_ckpt_<n>.ckpt in the trainer's default_root_dir).
CHECKPOINT_GLOBS = ("checkpoints/*.ckpt", "hpc_ckpt_*.ckpt")
# The config entries that make a run what it is; a different value means a different run.
RUN_KEYS = ("model", "diffusion", "module", "data", "seed", "global_batch_size")
# Entries of ``data`` that name where the files are, not which data: they may change between launches.
_LOCATION_KEYS = ("data_dir", "root", "path", "shards_dir", "num_workers", "persistent_workers")


def run_checkpoints(run_dir: str | Path) -> list[Path]:
    """Every checkpoint file of the run in ``run_dir`` (complete or not)."""
    root = Path(run_dir)
    return sorted(path for pattern in CHECKPOINT_GLOBS for path in root.glob(pattern) if path.is_file())


def newest_checkpoint(run_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint of ``run_dir`` with the highest optimizer step among those that read back completely
    (ties: the newest file), with its content (tensors memory-mapped); None if there is none."""
    best: tuple[tuple[int, float], Path, dict[str, Any]] | None = None
    for path in run_checkpoints(run_dir):
        try:
            checkpoint = read_lightning_checkpoint(path, mmap=True)
        except CheckpointError as exc:
            log.warning("resume: skipping an incomplete checkpoint: %s", exc)
            continue
        key = (int(checkpoint.get("global_step", -1)), path.stat().st_mtime)
        if best is None or key > best[0]:
            best = (key, path, checkpoint)
    return None if best is None else (best[1], best[2])


def _run_identity(config: dict[str, Any]) -> dict[str, Any]:
    identity = {key: config.get(key) for key in RUN_KEYS}
    if isinstance(identity["data"], dict):
        identity["data"] = {k: v for k, v in identity["data"].items() if k not in _LOCATION_KEYS}
    return identity


def config_differences(stored: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config trees, as ``key: old -> new``."""
    if not (isinstance(stored, dict) and isinstance(current, dict)):
        return [] if stored == current else [f"{prefix or 'value'}: {stored!r} -> {current!r}"]
    diffs: list[str] = []
    for key in sorted(set(stored) | set(current), key=str):
        name = f"{prefix}.{key}" if prefix else str(key)
        diffs += config_differences(stored.get(key), current.get(key), name)
    return diffs


def check_same_run(checkpoint: dict[str, Any], cfg: DictConfig, path: Path) -> None:
    """Refuse to continue ``checkpoint`` under ``cfg`` if they describe different runs."""
    stored = checkpoint.get("ddpm_config")
    if not isinstance(stored, dict):
        return  # written without ddpm-train's run config: nothing to compare
    current = OmegaConf.to_container(cfg, resolve=True)
    diffs = config_differences(_run_identity(stored), _run_identity(current))  # type: ignore[arg-type]
    if diffs:
        raise RunDirectoryExistsError(
            f"{path.parent} holds another run ({'; '.join(diffs[:3])}); refusing to continue or overwrite "
            "it: pick a new hydra.run.dir for this config"
        )


def resume_checkpoint(cfg: DictConfig, run_dir: str | Path) -> str | None:
    """The checkpoint ``ddpm-train`` continues: the run directory's newest complete one if it holds any
    (``resume=auto``), else the user's ``ckpt_path`` (None: a fresh start)."""
    mode = str(cfg.get("resume", "auto"))
    if mode not in RESUME_MODES:
        raise ConfigError(f"resume={mode} is not one of {', '.join(RESUME_MODES)}: use resume=auto or never")
    if not run_checkpoints(run_dir):
        return cfg.get("ckpt_path")
    if mode == "never":
        raise RunDirectoryExistsError(
            f"run directory {run_dir} already holds checkpoints; refusing to overwrite them: pick a new "
            "hydra.run.dir, or resume=auto to continue that run"
        )
    found = newest_checkpoint(run_dir)
    if found is None:
        raise RunDirectoryExistsError(
            f"run directory {run_dir} holds checkpoints but none of them reads back completely; refusing to "
            "overwrite them: pick a new hydra.run.dir (or move the broken files away)"
        )
    path, checkpoint = found
    check_same_run(checkpoint, cfg, path)
    log.info("resume=auto: continuing %s (step %d)", path, int(checkpoint.get("global_step", -1)))
    return str(path)


__all__ = [
    "check_same_run",
    "config_differences",
    "newest_checkpoint",
    "resume_checkpoint",
    "run_checkpoints",
]
