"""The Hydra callback behind every multirun's summary (``configs/hydra/default.yaml``: ``hydra.callbacks``).

* When a job ends (in the job's own process: locally, or on the SLURM node for the submitit launcher) it
  writes the job's outcome, ``job_result.json`` (:mod:`ddpm.sweeps.jobs`).
* When the multirun ends (in the launching process, after the basic, Optuna or submitit sweep) it writes
  the sweep's summary (:mod:`ddpm.sweeps.summary`), prints it, logs it to W&B when the jobs do; a
  ``ddpm-eval`` multirun of a training sweep's checkpoints also joins that sweep's summary and rewrites it
  (:mod:`ddpm.sweeps.evaluations`). A sweep that stops with an error (Hydra's basic sweeper after a failed
  job, the Optuna sweeper's failure limit) never reaches Hydra's ``on_multirun_end``: its summary is
  written when the process exits.
"""

from __future__ import annotations

import atexit
import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepSummaryCallback(Callback):
    """Writes each job's outcome and, at the end of a multirun, the sweep's summary (module docstring).
    Hydra builds it for single runs too: the module imports its libraries only when a multirun needs them.

    :param print_summary: print the summary's Markdown at the end of the sweep.
    :param wandb: log the summary to W&B when the sweep's jobs log to W&B.
    """

    def __init__(self, print_summary: bool = True, wandb: bool = True) -> None:
        self.print_summary = print_summary
        self.wandb = wandb
        self._sweep_dir: Path | None = None

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        from lightning.fabric.utilities.rank_zero import rank_zero_only

        from ddpm.sweeps.jobs import error_line, outcome, write_result

        if getattr(rank_zero_only, "rank", 0) != 0:  # one DDP job: its rank 0 writes the outcome
            return
        failed = job_return.status != JobStatus.COMPLETED
        value = job_return._return_value
        error = error_line(value) if failed and isinstance(value, BaseException) else None
        write_result(
            config.hydra.runtime.output_dir, outcome(value, failed), error, None if failed else value
        )

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_dir = Path(str(config.hydra.sweep.dir))
        atexit.register(self._summarize_once)  # a sweep that raises never reaches on_multirun_end

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_dir = Path(str(config.hydra.sweep.dir))
        self._summarize_once()

    def _summarize_once(self) -> None:
        sweep_dir, self._sweep_dir = self._sweep_dir, None
        if sweep_dir is None:
            return
        from ddpm.utils.run_dir import link_latest

        atexit.unregister(self._summarize_once)
        try:
            if self.summarize(sweep_dir):  # a sweep stopped before its first job has none
                link_latest(sweep_dir, parent="multiruns")  # logs/<task>/multiruns/latest: this sweep
            for training_sweep in self.join_evaluations(sweep_dir):
                log.info(f"ddpm-eval's reports joined the summary of {training_sweep}")
                self.summarize(training_sweep)
        except Exception as exc:  # the jobs' results are on disk; a summary error must not hide them
            log.warning(f"the sweep summary of {sweep_dir} failed: {type(exc).__name__}: {exc}")

    def summarize(self, sweep_dir: Path) -> bool:
        """Write (and print, and log to W&B) the summary of the sweep in ``sweep_dir``; False when the
        sweep has no job."""
        from ddpm.sweeps.summary import CSV_FILE, MD_FILE, PNG_FILE, write_summary

        written = write_summary(sweep_dir)
        if written is None:
            return False
        text, table = written
        if self.print_summary:
            print(f"\n{text}\nSummary: {sweep_dir / MD_FILE}, {CSV_FILE}, {PNG_FILE}", flush=True)
        if self.wandb:
            from ddpm.sweeps.wandb_summary import log_summary

            log_summary(sweep_dir, table)
        return True

    @staticmethod
    def join_evaluations(sweep_dir: Path) -> list[Path]:
        """A ``ddpm-eval`` sweep: list its runs in the training sweeps they evaluated; those sweeps."""
        from ddpm.sweeps.evaluations import register_evaluations
        from ddpm.sweeps.jobs import sweep_jobs

        return register_evaluations(sweep_jobs(sweep_dir))


__all__ = ["SweepSummaryCallback"]
