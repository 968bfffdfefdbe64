"""What one job of a sweep left in its run directory, read back for the sweep's summary.

A job's directory (``<sweep dir>/<job number>``) holds Hydra's ``.hydra/`` (``overrides.yaml``,
``config.yaml``, ``hydra.yaml``), ``job_result.json`` (its outcome, written by
:class:`ddpm.sweeps.callback.SweepSummaryCallback` when the job ends), the CSV logger's ``metrics.csv``
(training: every logged metric per step) and, for ``ddpm-eval`` jobs, ``report.json``.

Status: ``done`` (the job returned), ``diverged`` (it returned NaN: ``ddpm-train``'s diverged job in a
sweep), ``failed`` (it raised, or it left no ``job_result.json``: killed, out of memory, lost node).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ddpm.errors import DDPMError
from ddpm.io.atomic import atomic_write_json

RESULT_FILE = "job_result.json"
DONE, DIVERGED, FAILED = "done", "diverged", "failed"
Curve = list[tuple[int, float]]


@dataclass
class Job:
    """One job of a sweep: its overrides, outcome, metric curves and (ddpm-eval) report metrics."""

    number: int
    run_dir: Path
    overrides: list[str]
    status: str
    error: str | None = None
    curves: dict[str, Curve] = field(default_factory=dict)
    evaluated: dict[str, float] = field(default_factory=dict)  # ddpm-eval's report.json metrics
    experiment: str | None = None

    def final(self, name: str) -> float | None:
        """The metric's last logged value (a ddpm-eval report's number for its names); a failed job has
        none (its curves stop where it failed: they are plotted, not tabled)."""
        if name in self.evaluated:
            return self.evaluated[name]
        curve = self.curves.get(name) if self.status != FAILED else None
        return curve[-1][1] if curve else None

    def best(self, name: str, higher: bool) -> float | None:
        """The metric's best logged value (NaNs ignored), lowest or highest."""
        values = [v for _, v in self.curves.get(name, []) if not math.isnan(v)]
        if not values or self.status == FAILED:
            return self.final(name)
        return max(values) if higher else min(values)


def write_result(run_dir: str | Path, status: str, error: str | None, value: Any) -> Path:
    """``job_result.json``: the job's outcome (the job's own process writes it when the job ends)."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    record = {"status": status, "error": error, "return_value": number}
    return atomic_write_json(Path(run_dir) / RESULT_FILE, record)


def error_line(exc: BaseException) -> str:
    """The first line of a job's error; a user error (DDPMError, also wrapped by Hydra) without its type."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, DDPMError):
        seen = seen.__cause__ or seen.__context__
    shown = seen or exc
    text = str(shown).strip()
    line = text.splitlines()[0] if text else type(shown).__name__
    return line if isinstance(shown, DDPMError) or not text else f"{type(shown).__name__}: {line}"


def outcome(value: Any, failed: bool) -> str:
    """``failed`` for a job that raised, ``diverged`` for a NaN result, else ``done``."""
    if failed:
        return FAILED
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return DIVERGED if is_number and math.isnan(value) else DONE


def read_curves(path: Path) -> dict[str, Curve]:
    """Every metric of a Lightning CSV logger's ``metrics.csv`` as (step, value) pairs, in file order."""
    curves: dict[str, Curve] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for name, cell in row.items():
                if name in ("step", "epoch") or cell in (None, ""):
                    continue
                curves.setdefault(name, []).append((step, float(cell)))
    return curves


def metrics_file(run_dir: Path) -> Path | None:
    """The CSV logger's ``metrics.csv`` of a run (``<run dir>/csv/metrics.csv`` by default)."""
    found = sorted(run_dir.glob("*/metrics.csv")) + sorted(run_dir.glob("metrics.csv"))
    return found[0] if found else None


def report_metrics(run_dir: Path) -> dict[str, float]:
    """The numeric metrics of a ``ddpm-eval`` run's ``report.json`` (named by their protocol)."""
    path = run_dir / "report.json"
    if not path.is_file():
        return {}
    metrics = json.loads(path.read_text()).get("metrics", {})
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def read_status(run_dir: Path) -> tuple[str, str | None]:
    """The job's status and error line from ``job_result.json``; ``failed`` without one."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return FAILED, "the job left no job_result.json (killed, or still running)"
    record = json.loads(path.read_text())
    return str(record.get("status", FAILED)), record.get("error")


def chosen_experiment(run_dir: Path) -> str | None:
    """The ``experiment`` config the job composed (Hydra's ``runtime.choices``), if any."""
    path = run_dir / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return None
    choice = OmegaConf.select(OmegaConf.load(path), "hydra.runtime.choices.experiment", default=None)
    return str(choice) if choice else None


def read_job(run_dir: Path) -> Job:
    """The :class:`Job` of one run directory of a sweep."""
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.is_file() else []
    status, error = read_status(run_dir)
    metrics = metrics_file(run_dir)
    return Job(
        number=int(run_dir.name),
        run_dir=run_dir,
        overrides=overrides,
        status=status,
        error=error,
        curves=read_curves(metrics) if metrics else {},
        evaluated=report_metrics(run_dir),
        experiment=chosen_experiment(run_dir),
    )


def sweep_jobs(sweep_dir: Path) -> list[Job]:
    """Every job of a sweep: the numbered directories holding Hydra's ``.hydra/``, by job number."""
    dirs = [d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit() and (d / ".hydra").is_dir()]
    return [read_job(d) for d in sorted(dirs, key=lambda d: int(d.name))]


__all__ = [
    "DIVERGED",
    "DONE",
    "FAILED",
    "Job",
    "error_line",
    "outcome",
    "read_job",
    "sweep_jobs",
    "write_result",
]
