"""Table 2 of Ho et al. (2020) from a sweep of its cells (``hparams_search=table2``): one row per cell in
the paper's order, the paper's IS / FID (:data:`ddpm.evaluation.paper_numbers.TABLE2`) beside every IS / FID
the cell's job measured, each named by its protocol (in-loop ``eval/fid_10k_ddim100_train``, ``ddpm-eval``'s
``fid_50k_train``): numbers under different protocols are not the paper's and say so."""

from __future__ import annotations

from ddpm.evaluation.paper_numbers import TABLE2
from ddpm.sweeps.jobs import Job

NOTE = "Paper: Ho et al. (2020), Table 2 (50k samples, 1000 ancestral steps); measured: named by protocol."
COLUMNS = ["Table 2 cell", "job", "status", "paper IS", "paper FID", "measured IS", "measured FID"]


def measured(job: Job, kind: str) -> str:
    """``name = value`` of every ``kind`` (``is`` / ``fid``) number of the job, ddpm-eval's first."""
    names = [*job.evaluated, *sorted(n for n in job.curves if n not in job.evaluated)]
    found = [
        name for name in names if name.rsplit("/", 1)[-1].startswith(f"{kind}_") and not name.endswith("_std")
    ]
    return "; ".join(f"{name} = {job.final(name):.4g}" for name in found if job.final(name) is not None)


def paper_cell(numbers: dict[str, float], kind: str) -> str:
    """The paper's IS (with its std) or FID of a cell; '-' where the paper has none (unstable cells)."""
    if kind not in numbers:
        return "-"
    std = numbers.get(f"{kind}_std")
    return f"{numbers[kind]:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def table2_rows(jobs: list[Job]) -> list[list[str]]:
    """One row per Table 2 cell the sweep ran, in the paper's order (TABLE2's)."""
    by_cell = {job.experiment: job for job in sorted(jobs, key=lambda j: j.number)}
    rows = []
    for cell, numbers in TABLE2.items():
        job = by_cell.get(cell)
        if job is None:
            continue
        paper = [paper_cell(numbers, "is"), paper_cell(numbers, "fid")]
        rows.append([cell, str(job.number), job.status, *paper, measured(job, "is"), measured(job, "fid")])
    return rows


__all__ = ["COLUMNS", "NOTE", "table2_rows"]
