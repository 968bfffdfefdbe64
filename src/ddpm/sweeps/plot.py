"""``summary.png``: every job's training loss, validation and in-loop metric curves, one panel per metric."""

from __future__ import annotations

import io
import math
from pathlib import Path

from ddpm.io.atomic import atomic_write
from ddpm.sweeps.jobs import Job

MAX_PANELS = 12


def curve_names(jobs: list[Job]) -> list[str]:
    """``train/loss``, then every ``val/*`` and ``eval/*`` metric any job logged (at most MAX_PANELS)."""
    names = sorted({n for job in jobs for n in job.curves if n.startswith(("val/", "eval/"))})
    first = ["train/loss"] if any("train/loss" in job.curves for job in jobs) else []
    return (first + names)[:MAX_PANELS]


def job_label(job: Job, shared: list[str]) -> str:
    """``job 3: module.optimizer.lr=0.001 (diverged)``: the overrides that differ between the jobs."""
    own = " ".join(o for o in job.overrides if o not in shared)
    status = "" if job.status == "done" else f" ({job.status})"
    return f"job {job.number}: {own}{status}" if own else f"job {job.number}{status}"


def plot_curves(jobs: list[Job], shared: list[str], path: Path) -> Path:
    """Plot the curves of ``jobs`` into ``path`` (a PNG; a note when no job logged a metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = curve_names(jobs)
    cols = min(3, max(len(names), 1))
    rows = max(math.ceil(len(names) / cols), 1)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for job in jobs:
            curve = job.curves.get(name)
            if curve:
                steps, values = zip(*curve, strict=True)
                ax.plot(
                    steps, values, marker="o" if len(curve) < 20 else None, ms=3, label=job_label(job, shared)
                )
        ax.set_title(name)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if not names:
        axes.flat[0].text(0.5, 0.5, "no job logged a metric (no metrics.csv)", ha="center", va="center")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8)
    fig.tight_layout(rect=(0, 0.04 * (1 + len(labels) // 3), 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


__all__ = ["plot_curves"]
