"""Hydra's Optuna sweeper, resumable, where no single trial can break the study.

``hydra-optuna-sweeper`` (1.2 / 1.3) with the optuna 2.x it requires runs ``n_trials`` *more* trials on
every launch, crashes on a trial returning NaN, and ends a sweep whose trials all failed in a traceback
(``Record does not exist`` from the SQLite study's ``best_trial``). This subclass owns the ask / launch /
tell loop (the library's search-space parsing, fixed parameters, ``n_jobs`` batches, GridSampler,
``optimization_results.yaml`` and best-trial log are kept) with these semantics:

* **Before the first trial** a sweep whose jobs can never log ``optimized_metric`` (``val/*`` with
  ``trainer.max_steps`` below ``trainer.val_check_interval`` or ``trainer.limit_val_batches=0``, a name
  nothing logs, ...: :func:`ddpm.sweeps.objective.metric_problem`) is refused in one line (ConfigError).
* **A trial's outcome**: a number: COMPLETE. NaN (a diverged ``ddpm-train`` job): FAIL with the user
  attribute ``diverged``; a rerun would diverge again, so it has a result. No result: FAIL with the user
  attribute ``error`` (its one line): the job logged no ``optimized_metric`` (the line names the metric
  and the fix), the job raised (the error's first line), or the sweep was interrupted while it ran
  (``interrupted``: a killed sweep's RUNNING trials, marked by the next run).
* **Counting**: ``n_trials`` is the study's total of trials *with a result* (COMPLETE, PRUNED or
  diverged). A launch of the same command first enqueues the parameters of the trials that failed without
  a result (each once: its rerun carries ``rerun_of``), then asks new ones; one launch runs at most the
  missing count, so a tolerated failure is left to the next launch.
* **Stops**, each one line (DDPMError): a batch whose failures without a result exceed
  ``hydra.sweeper.max_failure_rate`` (library default 0.0: any) stops the sweep, naming the trial, why, and
  that the same command runs the failed trials again; a study with no COMPLETE trial at the end reports
  so and writes no ``optimization_results.yaml``.

Job N is trial N (the fixed sweep dir of ``hparams_search=optuna``: ``<sweep dir>/<trial number>``). One
sweep process per study at a time (a second one would see the first one's running trials as interrupted).
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, Trial, TrialState, create_trial

from ddpm.errors import ConfigError, DDPMError
from ddpm.sweeps.jobs import error_line
from ddpm.sweeps.objective import metric_problem, missing_metric_message

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"
DIVERGED = "diverged"
ERROR = "error"
RERUN_OF = "rerun_of"
# swept keys that change what a job logs: the sweep-level metric check leaves those to each job's own
LOGGING_KEYS = ("trainer", "callbacks", "optimized_metric", "experiment", "debug")

SearchSpace = tuple[dict[str, BaseDistribution], dict[str, Any]]


class NoResult(Exception):
    """A trial that ended without a result; its message is the trial's one line."""


def check_storage_backend(storage: Any) -> None:
    """optuna 2.x's RDB storage cannot read its schema version through SQLAlchemy 2 (an AssertionError)."""
    if storage is None or not str(storage).startswith(("sqlite", "mysql", "postgresql")):
        return
    if optuna.__version__.startswith("2.") and not sqlalchemy.__version__.startswith("1."):
        raise ConfigError(
            f"optuna {optuna.__version__} cannot use SQLAlchemy {sqlalchemy.__version__} for its "
            "storage: pip install 'sqlalchemy<2' (as pyproject.toml pins it)"
        )


def make_sqlite_dir(storage: Any) -> None:
    """SQLite creates its database file but not the folder above it."""
    if storage is not None and str(storage).startswith("sqlite:///"):
        Path(str(storage)[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)


def has_result(trial: FrozenTrial) -> bool:
    """COMPLETE, PRUNED, or FAIL because it diverged: the trials that count towards ``n_trials``."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get(DIVERGED, False))


def counted_trials(study: optuna.study.Study) -> int:
    """Trials that count towards ``n_trials`` (:func:`has_result`)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if has_result(t))


def rerun(study: optuna.study.Study, trial: FrozenTrial) -> None:
    """Enqueue ``trial``'s parameters as a new trial that records which one it reruns."""
    with warnings.catch_warnings():  # create_trial, add_trial: "experimental" in optuna 2.x (stable in 3)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        waiting = create_trial(
            state=TrialState.WAITING,
            system_attrs={"fixed_params": dict(trial.params)},
            user_attrs={RERUN_OF: trial.number},
        )
        study.add_trial(waiting)


def mark_interrupted(study: optuna.study.Study, trials: list[FrozenTrial] | list[Trial]) -> None:
    """Mark those of ``trials`` still RUNNING as FAIL with the user attribute ``interrupted``."""
    storage = study._storage
    for trial in trials:
        if storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
            storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
            storage.set_trial_user_attr(trial._trial_id, ERROR, "interrupted while it ran")
            storage.set_trial_state(trial._trial_id, TrialState.FAIL)


def fail_interrupted_trials(study: optuna.study.Study) -> int:
    """Mark the trials left RUNNING as FAIL (``interrupted``) and enqueue their parameters; their count."""
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    mark_interrupted(study, stale)
    for trial in stale:
        rerun(study, trial)
        log.warning(f"Trial {trial.number} was interrupted: marked FAIL, its parameters run again")
    return len(stale)


def rerun_failed_trials(study: optuna.study.Study, limit: int) -> int:
    """Enqueue the parameters of up to ``limit`` trials that failed without a result and have no rerun yet."""
    trials = study.get_trials(deepcopy=False)
    rerun_already = {t.user_attrs.get(RERUN_OF) for t in trials}
    failed = [
        t
        for t in trials
        if t.state == TrialState.FAIL and not has_result(t) and t.number not in rerun_already
    ]
    for trial in failed[:limit]:
        rerun(study, trial)
    return min(len(failed), limit)


def consecutive_runs(numbers: list[int]) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges of ``numbers`` counting up by one (one launch each: job N = trial N)."""
    runs, start = [], 0
    for i in range(1, len(numbers) + 1):
        if i == len(numbers) or numbers[i] != numbers[i - 1] + 1:
            runs.append((start, i))
            start = i
    return runs


def tell(study: optuna.study.Study, trial: Trial, state: TrialState, values: list[float] | None) -> None:
    """``study.tell``, where an exhausted GridSampler's ``Study.stop`` (not allowed outside optimize) is no
    error: the trial is recorded all the same."""
    try:
        study.tell(trial, values=values, state=state)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


class ResumableOptunaSweeperImpl(OptunaSweeperImpl):
    """The Optuna sweeper with the module's semantics: see the module docstring."""

    def sweep(self, arguments: list[str]) -> None:
        check_storage_backend(self.storage)
        space = self._search_space(arguments)
        self._refuse_unloggable_metric(space)
        make_sqlite_dir(self.storage)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self.sampler,
            directions=self._get_directions(),
            load_if_exists=True,
        )
        log.info(f"Study {study.study_name}, storage {self.storage}, sampler {type(self.sampler).__name__}")
        self._run_trials(study, space, self._prepare(study))
        self._report(study)

    def _search_space(self, arguments: list[str]) -> SearchSpace:
        """The distributions to sample and the fixed overrides (the library's parsing); a GridSampler gets
        its grid, and ``n_trials`` is at most the grid's size."""
        self._process_searchspace_config()
        distributions, fixed = create_params_from_overrides(
            [*self._parse_sweeper_params_config(), *arguments]
        )
        distributions = {**(self.search_space_distributions or {}), **distributions}
        for name in fixed:
            distributions.pop(name, None)
        sampler = self.sampler
        if isinstance(sampler, functools.partial) and sampler.func is optuna.samplers.GridSampler:
            grid = {name: self._to_grid_sampler_choices(d) for name, d in distributions.items()}
            self.sampler = sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(choices) for choices in grid.values()))
            log.info(f"GridSampler: at most {self.n_trials} trials")
        return distributions, fixed

    def _refuse_unloggable_metric(self, space: SearchSpace) -> None:
        """Refuse, before any trial, a sweep whose jobs can never log ``optimized_metric``."""
        swept = [name.lstrip("+~") for name in space[0]]
        if any(name.split(".")[0] in LOGGING_KEYS or name == "module" for name in swept):
            return  # each job checks its own config (ddpm-train's train_job)
        problem = metric_problem(self.config)
        if problem is not None:
            raise ConfigError(problem)

    def _prepare(self, study: optuna.study.Study) -> int:
        """Mark interrupted trials, enqueue the reruns of failed ones; the number of trials to run."""
        interrupted = fail_interrupted_trials(study)
        done = counted_trials(study)
        remaining = max(self.n_trials - done, 0)
        waiting = sum(1 for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING)
        reruns = rerun_failed_trials(study, limit=max(remaining - waiting, 0)) + interrupted
        first = f" (the parameters of {reruns} failed trial(s) first)" if reruns and remaining else ""
        name, total = study.study_name, self.n_trials
        log.info(f"Study {name}: {done} of {total} trials have a result, {remaining} to run{first}")
        return remaining

    def _run_trials(self, study: optuna.study.Study, space: SearchSpace, count: int) -> None:
        """Ask, launch and tell ``count`` trials, ``n_jobs`` at a time."""
        while count > 0:
            batch = min(self.n_jobs, count)
            trials = [study.ask() for _ in range(batch)]
            overrides = self._configure_trials(trials, space[0], space[1])
            returns = self._launch(study, trials, overrides)
            failures = [
                line for trial, ret in zip(trials, returns) if (line := self._tell(study, trial, ret))
            ]
            self._check_failures(failures, batch)
            count -= batch

    def _launch(self, study: optuna.study.Study, trials: list[Trial], overrides: Any) -> list[JobReturn]:
        """Launch the batch (job N = trial N); an error of the launcher itself fails its trials."""
        returns: list[JobReturn] = []
        try:
            for start, end in consecutive_runs([t.number for t in trials]):
                launched = self.launcher.launch(overrides[start:end], initial_job_idx=trials[start].number)
                returns += list(launched)
        except (KeyboardInterrupt, SystemExit):
            mark_interrupted(study, trials)  # a job's exit (or Ctrl-C) ends the sweep: rerun next time
            raise
        except Exception as exc:  # e.g. submitit's error for a failed SLURM job
            returns += [JobReturn(status=JobStatus.FAILED, _return_value=exc)] * (len(trials) - len(returns))
        self.job_idx = trials[-1].number + 1
        return returns

    def _values(self, number: int, ret: JobReturn) -> list[float]:
        """The job's objective values; NoResult (with the trial's line) when it has none."""
        if ret.status != JobStatus.COMPLETED:
            raise NoResult(f"trial {number} failed: {error_line(ret._return_value)}")
        value, count = ret._return_value, len(self._get_directions())
        if value is None:
            metric = str(OmegaConf.select(self.config, "optimized_metric", default=None) or "its metric")
            raise NoResult(missing_metric_message(number, metric, ret.cfg))
        try:
            values = [float(value)] if count == 1 else [float(v) for v in value]
        except (TypeError, ValueError):
            raise NoResult(f"trial {number} returned {value!r}, not {count} number(s)") from None
        if len(values) != count:
            raise NoResult(f"trial {number} returned {len(values)} values for {count} objectives")
        return values

    def _tell(self, study: optuna.study.Study, trial: Trial, ret: JobReturn) -> str | None:
        """Record one job's outcome (see the module docstring); the line of a trial without a result."""
        try:
            values = self._values(trial.number, ret)
        except NoResult as failure:
            trial.set_user_attr(ERROR, str(failure))
            tell(study, trial, TrialState.FAIL, None)
            return str(failure)
        if any(math.isnan(v) for v in values):
            trial.set_user_attr(DIVERGED, True)
            tell(study, trial, TrialState.FAIL, None)
            log.warning(f"Trial {trial.number} returned NaN (diverged): marked FAIL, the sweep goes on")
            return None
        tell(study, trial, TrialState.COMPLETE, values)
        return None

    def _check_failures(self, failures: list[str], launched: int) -> None:
        """Stop the sweep (one line) when a batch's failures without a result exceed max_failure_rate."""
        if failures and len(failures) / launched > self.max_failure_rate:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise DDPMError(
                f"{failures[0]}{more}; the sweep stops: {len(failures)} of {launched} trials failed "
                f"without a result, more than hydra.sweeper.max_failure_rate={self.max_failure_rate}; the "
                "same command runs the failed trials again"
            )
        for line in failures:
            log.warning(f"{line} (marked FAIL, not counted: the same command runs it again)")

    def _report(self, study: optuna.study.Study) -> None:
        """Log the best trial(s) and write ``optimization_results.yaml``; one line if nothing completed."""
        trials = study.get_trials(deepcopy=False)
        if not any(t.state == TrialState.COMPLETE for t in trials):
            diverged = sum(1 for t in trials if t.user_attrs.get(DIVERGED))
            failed = sum(1 for t in trials if t.state == TrialState.FAIL and not has_result(t))
            again = "; the same command runs the failed trials again" if failed else ""
            raise DDPMError(
                f"no trial of the sweep completed ({diverged} diverged, {failed} failed without a result): "
                f"nothing to report; see the jobs' logs under {self.config.hydra.sweep.dir}{again}"
            )
        if len(study.directions) == 1:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
            log.info(f"Best parameters: {best.params}")
            log.info(f"Best value: {best.value}")
        else:
            front = [{"params": t.params, "values": t.values} for t in study.best_trials]
            results = {"name": "optuna", "solutions": front}
            log.info(f"Number of Pareto solutions: {len(front)}")
        OmegaConf.save(OmegaConf.create(results), f"{self.config.hydra.sweep.dir}/optimization_results.yaml")
