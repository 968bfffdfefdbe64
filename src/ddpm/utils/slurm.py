"""The SLURM job this process belongs to, as SLURM's own commands name it."""

from __future__ import annotations

import os


def slurm_job_id() -> str | None:
    """``<job id>``, or ``<array job id>_<task id>`` for an array task (what ``scontrol requeue`` takes);
    None outside SLURM."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


__all__ = ["slurm_job_id"]
