"""``ddpm-eval``'s report in W&B: its metrics, protocol and sample grid, when a W&B logger is configured.

``ddpm-eval ... logger=wandb`` (the training runs' logger config; ``logger.wandb.job_type=eval`` by the
entry point) makes one W&B run per evaluation directory: its id is kept there like a training run's, so a
resumed evaluation reports into the same W&B run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, open_dict

from ddpm.utils.config import instantiate_dict
from ddpm.utils.wandb_run import attach_kept_run_id


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics that are numbers (W&B charts and the run summary take numbers only)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def wandb_loggers(logger_cfg: DictConfig | None, out_dir: Path) -> list[WandbLogger]:
    """The configured W&B loggers, as evaluation runs with the evaluation directory's kept id."""
    if not logger_cfg:
        return []
    for node in logger_cfg.values():
        if node and str(node.get("_target_", "")).endswith("WandbLogger"):
            with open_dict(node):
                node.job_type = "eval"
                node.save_dir = str(out_dir)
    attach_kept_run_id(logger_cfg, out_dir)
    return [lg for lg in instantiate_dict(logger_cfg) if isinstance(lg, WandbLogger)]


def start_wandb(logger_cfg: DictConfig | None, out_dir: str | Path) -> list[WandbLogger]:
    """The evaluation's W&B loggers with their runs started: a missing W&B login fails now, before the
    sampling, not after it."""
    loggers = wandb_loggers(logger_cfg, Path(out_dir))
    for logger in loggers:
        _ = logger.experiment  # wandb.init
    return loggers


def log_report(loggers: list[WandbLogger], report: dict[str, Any], out_dir: str | Path) -> int:
    """Log ``report`` (metrics as the run summary and one history row, the protocol as config, the sample
    grid ``samples.png`` as an image, ``report.json`` as a file) to each W&B logger; returns how many."""
    out_dir = Path(out_dir)
    metrics = numeric_metrics(report.get("metrics", {}))
    for logger in loggers:
        logger.log_hyperparams({"protocol": report.get("protocol", {}), "expected": report.get("expected")})
        logger.log_metrics({f"eval/{k}": v for k, v in metrics.items()})
        logger.experiment.summary.update({f"eval/{k}": v for k, v in metrics.items()})
        grid = out_dir / "samples.png"
        if grid.is_file():
            logger.log_image("eval/samples", [str(grid)])
        if (out_dir / "report.json").is_file():
            logger.experiment.save(str(out_dir / "report.json"), base_path=str(out_dir), policy="now")
        logger.finalize("success")
    return len(loggers)


__all__ = ["log_report", "numeric_metrics", "start_wandb", "wandb_loggers"]
