"""One W&B run per job, also across requeues and resumes: the run id is kept in the run directory."""

from __future__ import annotations

import secrets
import string
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, open_dict

from ddpm.io.atomic import atomic_write

ID_FILE = "wandb_run_id"
_ID_ALPHABET = string.ascii_lowercase + string.digits


def kept_run_id(run_dir: str | Path) -> str | None:
    """The W&B run id of the job in ``run_dir``: read from ``run_dir/wandb_run_id``, created there by
    global rank 0 at the job's first launch (other ranks do not log to W&B and get None until then)."""
    path = Path(run_dir) / ID_FILE
    if path.is_file():
        return path.read_text().strip() or None
    if getattr(rank_zero_only, "rank", 0) != 0:
        return None
    run_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))  # W&B's own id format
    atomic_write(path, lambda f: f.write(run_id.encode()))
    return run_id


def attach_kept_run_id(logger_cfg: DictConfig | None, run_dir: str | Path) -> None:
    """Give each WandbLogger config without an explicit ``id`` the job's kept id (``resume`` stays as
    configured: ``allow`` continues the run when it exists)."""
    for node in (logger_cfg or {}).values():
        if node and str(node.get("_target_", "")).endswith("WandbLogger") and node.get("id") is None:
            with open_dict(node):
                node.id = kept_run_id(run_dir)


__all__ = ["ID_FILE", "attach_kept_run_id", "kept_run_id"]
