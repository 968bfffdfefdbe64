"""Preemption and time limits: on SLURM's pre-timeout signal, checkpoint at a step boundary, requeue, stop.

SLURM sends the signal ``--signal=USR1@<seconds>`` before the time limit (submitit's launcher uses USR2).
The handler only records it; at the next optimizer-step boundary (the point where ModelCheckpoint saves,
from which a resumed run repeats the uninterrupted one bit for bit) every rank agrees to stop, the
checkpoint is written, global rank 0 runs ``scontrol requeue <job>``, and training ends. The requeued
job starts in the same run directory (``runs/slurm-<job id>``), where ``resume=auto`` continues the
newest checkpoint and the kept W&B run id continues the same W&B run.

Lightning's own SLURM auto-requeue saves its ``hpc_ckpt`` from inside the signal handler, i.e. in the
middle of whatever the step was doing, so a resumed run is not guaranteed to be exact; installing this
handler first makes Lightning leave the signal to it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L

from ddpm.utils.slurm import slurm_job_id

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "preempted.ckpt"


def requeue_slurm_job(job_id: str) -> bool:
    """``scontrol requeue <job_id>``; True if SLURM accepted it."""
    result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        log.warning("scontrol requeue %s failed: %s", job_id, result.stderr.strip())
    return result.returncode == 0


class PreemptionCheckpoint(L.Callback):
    """Checkpoint to ``<run dir>/checkpoints/preempted.ckpt`` and stop (requeueing a SLURM job) on a signal.

    Args:
        signals: the signal names to handle (SLURM's pre-timeout signal; USR1 for ``sbatch --signal``,
            USR2 for submitit).
        check_every_n_steps: with several ranks, how often they agree on whether a signal arrived (one
            tiny all-reduce per check); a single process checks every step at no cost.
        requeue: run ``scontrol requeue`` inside a SLURM job.
        max_requeues: stop requeueing once the job was restarted this often (``SLURM_RESTART_COUNT``);
            None: no limit.
    """

    def __init__(
        self,
        signals: Sequence[str] = ("SIGUSR1", "SIGUSR2"),
        check_every_n_steps: int = 10,
        requeue: bool = True,
        max_requeues: int | None = None,
    ) -> None:
        self.signals = [signal.Signals[name if name.startswith("SIG") else f"SIG{name}"] for name in signals]
        self.check_every_n_steps = max(int(check_every_n_steps), 1)
        self.requeue = requeue
        self.max_requeues = max_requeues
        self.received: tuple[int, float] | None = None  # (signal number, time.monotonic())
        self.checkpoint_path: Path | None = None
        self.requeued = False  # SLURM accepted `scontrol requeue`: this launch must end without a result
        self._previous: dict[signal.Signals, Any] = {}

    # ------------------------------------------------------------------ signal handling
    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = (signum, time.monotonic())

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    # ------------------------------------------------------------------ at a step boundary
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.world_size > 1 and trainer.global_step % self.check_every_n_steps:
            return
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        path = Path(trainer.default_root_dir) / "checkpoints" / CHECKPOINT_NAME
        trainer.save_checkpoint(path)
        self.checkpoint_path = path
        waited = time.monotonic() - self.received[1] if self.received else 0.0
        log.info(
            "signal received: checkpoint %s at step %d, %.1f s after the signal",
            path,
            trainer.global_step,
            waited,
        )
        trainer.should_stop = True
        if trainer.is_global_zero:
            self._requeue()

    def _requeue(self) -> None:
        job = slurm_job_id()
        if not (self.requeue and job):
            log.info("not requeueing (no SLURM job or requeue=false): run the same command to continue")
            return
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        if self.max_requeues is not None and restarts >= self.max_requeues:
            log.warning("job %s was requeued %d times (max_requeues): not requeueing it again", job, restarts)
            return
        if requeue_slurm_job(job):
            self.requeued = True
            log.info("requeued SLURM job %s", job)


__all__ = ["CHECKPOINT_NAME", "PreemptionCheckpoint", "requeue_slurm_job"]
