"""The summary every multirun writes into its sweep directory when it ends.

* ``summary.csv`` and ``summary.md``: one row per job, best first by ``optimized_metric`` (its direction:
  the Optuna sweeper's ``direction``, else :func:`ddpm.metrics.names.higher_is_better`): the job number,
  status (``done`` / ``diverged`` / ``failed``, :mod:`ddpm.sweeps.jobs`), the optimized metric's final and
  best values, the final value of every validation (``val/*``) and in-loop (``eval/*``) metric and of every
  ``ddpm-eval`` number joined from an evaluation of the job's checkpoints (named by their protocol), the
  job's overrides (the Markdown shows those that differ between jobs, the shared ones above the table), the
  run directory and a failed job's error line;
* with ``hparams_search=table2`` (jobs of the ``table2_*`` experiments) the Markdown also holds Table 2 in
  the paper's layout, the paper's IS / FID (:data:`ddpm.evaluation.paper_numbers.TABLE2`) beside every
  measured IS / FID, each under its protocol name (:mod:`ddpm.sweeps.table2`);
* ``summary.png``: every job's training loss, validation and in-loop metric curves (:mod:`ddpm.sweeps.plot`).

``ddpm-eval`` multiruns of a sweep's checkpoints join it: their run directories are recorded in the training
sweep's ``evaluations.json`` (:mod:`ddpm.sweeps.evaluations`) and their ``report.json`` numbers become
columns.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from ddpm.io.atomic import atomic_write
from ddpm.metrics.names import higher_is_better
from ddpm.sweeps.evaluations import join_evaluations
from ddpm.sweeps.jobs import Job, sweep_jobs
from ddpm.sweeps.plot import plot_curves
from ddpm.sweeps.table2 import COLUMNS, NOTE, table2_rows

CSV_FILE, MD_FILE, PNG_FILE = "summary.csv", "summary.md", "summary.png"
DEFAULT_METRIC = "val/loss_ema"


@dataclass(frozen=True)
class Objective:
    """The metric a sweep optimizes and its direction."""

    metric: str
    higher: bool


@dataclass
class Table:
    """The summary table: column names, one row of cells per job (best first), and the jobs."""

    columns: list[str]
    rows: list[list[str]]
    jobs: list[Job]


def default_metric(jobs: list[Job]) -> str:
    """The metric of jobs without ``optimized_metric``: a ``ddpm-eval`` sweep's FID against the training
    set (what ``ddpm-eval`` returns), else its first number; a training sweep's ``val/loss_ema``."""
    names = [name for job in jobs for name in job.evaluated]
    fid = [name for name in names if name.startswith("fid_") and name.endswith("_train")]
    return (fid or names or [DEFAULT_METRIC])[0]


def sweep_objective(jobs: list[Job]) -> Objective:
    """``optimized_metric`` of the sweep's jobs (their ``.hydra/config.yaml``) and its direction (the
    sweeper's ``direction`` where it has one)."""
    for job in jobs:
        config, hydra = job.run_dir / ".hydra" / "config.yaml", job.run_dir / ".hydra" / "hydra.yaml"
        if not config.is_file():
            continue
        metric = OmegaConf.select(OmegaConf.load(config), "optimized_metric", default=None)
        metric = str(metric) if metric else default_metric(jobs)
        direction = None
        if hydra.is_file():
            direction = OmegaConf.select(OmegaConf.load(hydra), "hydra.sweeper.direction", default=None)
        higher = direction == "maximize" if isinstance(direction, str) else higher_is_better(metric)
        return Objective(metric, higher)
    return Objective(default_metric(jobs), higher_is_better(default_metric(jobs)))


def metric_columns(jobs: list[Job], objective: Objective) -> list[str]:
    """The optimized metric, then every other validation, in-loop and ddpm-eval metric of any job."""
    names: set[str] = set()
    for job in jobs:
        names |= {n for n in job.curves if n.startswith(("val/", "eval/"))} | set(job.evaluated)
    names.discard(objective.metric)
    return [objective.metric, *sorted(names)]


def sort_key(job: Job, objective: Objective) -> tuple[int, float, int]:
    """Best first by the optimized metric's final value; jobs without a number (NaN, none) last."""
    value = job.final(objective.metric)
    if value is None or math.isnan(value):
        return (1, 0.0, job.number)
    return (0, -value if objective.higher else value, job.number)


def shared_overrides(jobs: list[Job]) -> list[str]:
    """The overrides every job has (shown once, above the Markdown table)."""
    if not jobs:
        return []
    common = set(jobs[0].overrides).intersection(*(set(j.overrides) for j in jobs[1:]))
    return [o for o in jobs[0].overrides if o in common] if len(jobs) > 1 else []


def number(value: float | None) -> str:
    """A table cell of a metric: 4 significant digits, empty when the job has none."""
    return "" if value is None else f"{value:.4g}"


def build_table(jobs: list[Job], objective: Objective, varying_only: bool) -> Table:
    """The summary table of ``jobs`` (overrides: all of them, or only those that differ between jobs)."""
    metrics = metric_columns(jobs, objective)
    columns = [
        "job",
        "status",
        metrics[0],
        f"best {metrics[0]}",
        *metrics[1:],
        "overrides",
        "run_dir",
        "error",
    ]
    shared = set(shared_overrides(jobs)) if varying_only else set()
    ordered = sorted(jobs, key=lambda job: sort_key(job, objective))
    rows = []
    for job in ordered:
        finals = [number(job.final(name)) for name in metrics[1:]]
        best = number(job.best(objective.metric, objective.higher))
        overrides = " ".join(o for o in job.overrides if o not in shared)
        cells = [str(job.number), job.status, number(job.final(metrics[0])), best, *finals, overrides]
        rows.append([*cells, str(job.run_dir), job.error or ""])
    return Table(columns, rows, ordered)


def csv_text(table: Table) -> str:
    """The table as CSV."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    return out.getvalue()


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def markdown_text(sweep_dir: Path, table: Table, objective: Objective) -> str:
    """``summary.md``: the title, the shared overrides, the jobs' table, Table 2 when the sweep is one."""
    direction = "highest" if objective.higher else "lowest"
    lines = [
        f"# Sweep {sweep_dir}",
        "",
        f"{len(table.jobs)} jobs, best first by {objective.metric} ({direction} first, final value).",
    ]
    shared = shared_overrides(table.jobs)
    if shared:
        lines.append(f"Every job: {' '.join(shared)}")
    lines += ["", markdown_table(table.columns, table.rows)]
    table2 = table2_rows(table.jobs)
    if table2:
        lines += ["", "## Table 2", "", NOTE, "", markdown_table(COLUMNS, table2)]
    return "\n".join(lines) + "\n"


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_summary(sweep_dir: str | Path) -> tuple[str, Table] | None:
    """Write ``summary.csv``, ``summary.md`` and ``summary.png`` of the sweep in ``sweep_dir``; returns
    the Markdown (printed at the end of the sweep) and the full table, or None for a sweep without jobs."""
    sweep_dir = Path(sweep_dir)
    jobs = sweep_jobs(sweep_dir) if sweep_dir.is_dir() else []
    if not jobs:
        return None
    join_evaluations(sweep_dir, jobs)
    objective = sweep_objective(jobs)
    table = build_table(jobs, objective, varying_only=False)
    write_text(sweep_dir / CSV_FILE, csv_text(table))
    text = markdown_text(sweep_dir, build_table(jobs, objective, varying_only=True), objective)
    write_text(sweep_dir / MD_FILE, text)
    plot_curves(jobs, shared_overrides(jobs), sweep_dir / PNG_FILE)
    return text, table


__all__ = ["Objective", "Table", "build_table", "sweep_objective", "write_summary"]
