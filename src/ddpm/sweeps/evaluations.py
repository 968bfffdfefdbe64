"""``ddpm-eval`` runs of a sweep's checkpoints, joined to the sweep's summary.

A ``ddpm-eval`` multirun over checkpoints of a training sweep (``ckpt_path=<sweep>/0/checkpoints/last.ckpt,
<sweep>/1/...``) lists its run directories in the training sweep's ``evaluations.txt`` when it ends
(:func:`register_evaluations`); the training sweep's summary then carries each ``report.json``'s numbers
(named by their protocol) in the row of the job whose run directory holds the evaluated checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from ddpm.io.atomic import atomic_write
from ddpm.sweeps.jobs import Job, report_metrics

EVALUATIONS_FILE = "evaluations.txt"


def report_checkpoint(eval_dir: Path) -> Path | None:
    """The checkpoint a ``ddpm-eval`` run evaluated (its ``report.json``), resolved; None without one."""
    report = eval_dir / "report.json"
    if not report.is_file():
        return None
    source = json.loads(report.read_text()).get("protocol", {}).get("checkpoint")
    return Path(str(source)).resolve() if source else None


def join_evaluations(sweep_dir: Path, jobs: list[Job]) -> None:
    """Add the numbers of the ``ddpm-eval`` runs listed in ``evaluations.txt`` to the jobs whose run
    directory holds the checkpoint they evaluated (later evaluations replace same-named numbers)."""
    listed = sweep_dir / EVALUATIONS_FILE
    if not listed.is_file():
        return
    by_dir = {job.run_dir.resolve(): job for job in jobs}
    for line in listed.read_text().splitlines():
        checkpoint = report_checkpoint(Path(line)) if line.strip() else None
        owner = next((by_dir[p] for p in checkpoint.parents if p in by_dir), None) if checkpoint else None
        if owner is not None:
            owner.evaluated.update(report_metrics(Path(line)))


def training_sweep(checkpoint: Path) -> Path | None:
    """The sweep directory of the job that wrote ``checkpoint``: the nearest numbered run directory above
    it with Hydra's ``.hydra/``, whose parent holds a sweep's ``multirun.yaml`` or summary."""
    for run_dir in checkpoint.parents:
        if run_dir.name.isdigit() and (run_dir / ".hydra").is_dir():
            sweep = run_dir.parent
            marked = any((sweep / name).is_file() for name in ("multirun.yaml", "summary.csv"))
            return sweep if marked else None
    return None


def write_lines(path: Path, lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def register_evaluations(eval_jobs: list[Job]) -> list[Path]:
    """List each evaluation job's run directory in the ``evaluations.txt`` of the training sweep whose
    checkpoint it evaluated (once); returns those training sweeps' directories."""
    sweeps: dict[Path, list[str]] = {}
    for job in eval_jobs:
        checkpoint = report_checkpoint(job.run_dir)
        sweep = training_sweep(checkpoint) if checkpoint else None
        if sweep is not None:
            sweeps.setdefault(sweep, []).append(str(job.run_dir.resolve()))
    for sweep, dirs in sweeps.items():
        path = sweep / EVALUATIONS_FILE
        known = path.read_text().splitlines() if path.is_file() else []
        lines = known + [d for d in dirs if d not in known]
        write_lines(path, lines)
    return list(sweeps)


__all__ = ["EVALUATIONS_FILE", "join_evaluations", "register_evaluations", "report_checkpoint"]
