"""``ddpm-eval`` runs of a sweep's checkpoints, joined to the sweep's summary.

A ``ddpm-eval`` multirun over checkpoints of a training sweep (``ckpt_path=<sweep>/0/checkpoints/last.ckpt,
<sweep>/1/...``) records its run directories, each with the checkpoint it evaluated (resolved when the
evaluation ends: a path through ``multiruns/latest`` names the sweep it meant then), in the training sweep's
``evaluations.json`` (:func:`register_evaluations`); the training sweep's summary then carries each
``report.json``'s numbers (named by their protocol) in the row of the job whose run directory holds the
evaluated checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from ddpm.io.atomic import atomic_write_json
from ddpm.sweeps.jobs import Job, report_metrics

EVALUATIONS_FILE = "evaluations.json"


def report_checkpoint(eval_dir: Path) -> Path | None:
    """The checkpoint a ``ddpm-eval`` run evaluated (its ``report.json``), resolved; None without one."""
    report = eval_dir / "report.json"
    if not report.is_file():
        return None
    source = json.loads(report.read_text()).get("protocol", {}).get("checkpoint")
    return Path(str(source)).resolve() if source else None


def registered(sweep_dir: Path) -> dict[str, str]:
    """The sweep's ``evaluations.json``: ``ddpm-eval`` run directory -> the checkpoint it evaluated."""
    path = sweep_dir / EVALUATIONS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def join_evaluations(sweep_dir: Path, jobs: list[Job]) -> None:
    """Add the numbers of the ``ddpm-eval`` runs in ``evaluations.json`` to the jobs whose run directory
    holds the checkpoint they evaluated (later evaluations replace same-named numbers)."""
    by_dir = {job.run_dir.resolve(): job for job in jobs}
    for eval_dir, checkpoint in registered(sweep_dir).items():
        owner = next((by_dir[p] for p in Path(checkpoint).parents if p in by_dir), None)
        if owner is not None:
            owner.evaluated.update(report_metrics(Path(eval_dir)))


def training_sweep(checkpoint: Path) -> Path | None:
    """The sweep directory of the job that wrote ``checkpoint``: the nearest numbered run directory above
    it with Hydra's ``.hydra/``, whose parent holds a sweep's ``multirun.yaml`` or summary."""
    for run_dir in checkpoint.parents:
        if run_dir.name.isdigit() and (run_dir / ".hydra").is_dir():
            sweep = run_dir.parent
            marked = any((sweep / name).is_file() for name in ("multirun.yaml", "summary.csv"))
            return sweep if marked else None
    return None


def register_evaluations(eval_jobs: list[Job]) -> list[Path]:
    """Record each evaluation job's run directory and checkpoint in the ``evaluations.json`` of the
    training sweep whose checkpoint it evaluated; returns those training sweeps' directories."""
    sweeps: dict[Path, dict[str, str]] = {}
    for job in eval_jobs:
        checkpoint = report_checkpoint(job.run_dir)
        sweep = training_sweep(checkpoint) if checkpoint else None
        if sweep is not None:
            sweeps.setdefault(sweep, {})[str(job.run_dir.resolve())] = str(checkpoint)
    for sweep, found in sweeps.items():
        atomic_write_json(sweep / EVALUATIONS_FILE, {**registered(sweep), **found})
    return list(sweeps)


__all__ = ["EVALUATIONS_FILE", "join_evaluations", "register_evaluations", "report_checkpoint"]
