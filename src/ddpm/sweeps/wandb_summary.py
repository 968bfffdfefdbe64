"""The sweep's summary in W&B, when its jobs log to W&B (``logger=wandb``): one W&B run in the sweep's
group (the jobs' group, ``<task>/<sweep dir name>``) holding the summary table, Table 2 where the sweep ran
its cells, the curves' plot and the summary files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ddpm.sweeps.jobs import Job
from ddpm.sweeps.summary import CSV_FILE, MD_FILE, PNG_FILE, Table
from ddpm.sweeps.table2 import COLUMNS, table2_rows
from ddpm.utils.config import sweep_group


def wandb_settings(jobs: list[Job]) -> tuple[str, DictConfig] | None:
    """The task name and W&B logger config of the sweep's jobs (their ``.hydra/config.yaml``); None
    when they do not log to W&B."""
    for job in jobs:
        path = job.run_dir / ".hydra" / "config.yaml"
        if not path.is_file():
            continue
        config = OmegaConf.load(path)
        for node in (OmegaConf.select(config, "logger", default=None) or {}).values():
            if isinstance(node, DictConfig) and str(node.get("_target_", "")).endswith("WandbLogger"):
                return str(config.get("task_name", "sweep")), node
    return None


def plain(node: DictConfig, key: str) -> Any:
    """A value of the jobs' logger config; None where absent or an interpolation only a job resolves."""
    return OmegaConf.select(node, key, default=None, throw_on_resolution_failure=False)


def log_summary(sweep_dir: Path, table: Table) -> bool:
    """Log the summary of the sweep in ``sweep_dir`` to W&B if its jobs log there; True when logged."""
    settings = wandb_settings(table.jobs)
    if settings is None:
        return False
    import wandb

    task_name, node = settings
    group = sweep_group(task_name, sweep_dir)
    run = wandb.init(
        project=plain(node, "project"),
        entity=plain(node, "entity"),
        group=group,
        name=f"{group} summary",
        job_type="sweep_summary",
        dir=str(sweep_dir),
        mode="offline" if plain(node, "offline") else None,
        reinit=True,
    )
    logged: dict[str, Any] = {"sweep/summary": wandb.Table(columns=table.columns, data=table.rows)}
    rows = table2_rows(table.jobs)
    if rows:
        logged["sweep/table2"] = wandb.Table(columns=COLUMNS, data=rows)
    if (sweep_dir / PNG_FILE).is_file():
        logged["sweep/curves"] = wandb.Image(str(sweep_dir / PNG_FILE))
    run.log(logged)
    for name in (CSV_FILE, MD_FILE):
        run.save(str(sweep_dir / name), base_path=str(sweep_dir), policy="now")
    run.finish()
    return True


__all__ = ["log_summary", "wandb_settings"]
