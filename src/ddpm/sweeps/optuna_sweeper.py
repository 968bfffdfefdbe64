"""Hydra's Optuna sweeper, resumable: a re-run of an interrupted sweep runs only the remaining trials.

``hydra-optuna-sweeper`` (1.2 / 1.3) is not enough on two counts, which is why this subclass exists:

* it runs ``n_trials`` *more* trials on every launch, even when its persistent study already holds some;
  here ``n_trials`` is the study's total: a re-run counts the finished trials (complete, pruned, failed)
  and asks only for the rest;
* with the optuna 2.x it requires, a trial returning NaN (``ddpm-train`` reports NaN as the optimized
  metric of a diverged multirun job) makes ``Study.tell`` raise, the sweeper's fallback ``tell`` raises
  again and the whole sweep crashes; here such a trial is marked FAIL and the sweep goes on (optuna 3's
  behaviour).

A trial left RUNNING by an interrupted sweep (its process was killed) is marked FAIL with the user
attribute ``interrupted`` and its parameters are enqueued, so it is tried again first; it does not count
towards ``n_trials``. One sweep process per study at a time (a second one would see the first one's
running trials as interrupted).
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from optuna.trial import TrialState

from ddpm.errors import ConfigError, DDPMError

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
INTERRUPTED = "interrupted"


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


def fail_interrupted_trials(study: optuna.study.Study) -> int:
    """Mark the trials left RUNNING as FAIL (``interrupted``) and enqueue their parameters; their count."""
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for trial in stale:
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        study._storage.set_trial_state(trial._trial_id, TrialState.FAIL)
        with warnings.catch_warnings():  # enqueue_trial is "experimental" in optuna 2.x (stable in 3)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.enqueue_trial(dict(trial.params))
        log.warning(f"Trial {trial.number} was interrupted: marked FAIL, its parameters run again")
    return len(stale)


def finished_trials(study: optuna.study.Study) -> int:
    """Trials that count towards ``n_trials``: finished, and not merely interrupted."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state in FINISHED and not t.user_attrs.get(INTERRUPTED, False)
    )


@contextlib.contextmanager
def nan_values_fail_trials() -> Iterator[None]:
    """While sweeping, ``Study.tell`` with a NaN value marks the trial FAIL instead of raising."""
    original = optuna.study.Study.tell

    def tell(self, trial, values=None, state=TrialState.COMPLETE):
        numbers = [values] if isinstance(values, (int, float)) else list(values or [])
        if state == TrialState.COMPLETE and any(math.isnan(float(v)) for v in numbers):
            number = trial if isinstance(trial, int) else trial.number
            log.warning(f"Trial {number} returned NaN (diverged): marked FAIL, the sweep goes on")
            return original(self, trial, None, TrialState.FAIL)
        return original(self, trial, values, state)

    optuna.study.Study.tell = tell
    try:
        yield
    finally:
        optuna.study.Study.tell = original


class ResumableOptunaSweeperImpl(OptunaSweeperImpl):
    """The library's sweep, with ``n_trials`` counted over the persistent study (see the module doc)."""

    def sweep(self, arguments: list[str]) -> None:
        check_storage_backend(self.storage)
        make_sqlite_dir(self.storage)
        if self.storage is not None and self.study_name is not None:
            study = optuna.create_study(
                study_name=self.study_name,
                storage=self.storage,
                directions=self._get_directions(),
                load_if_exists=True,
            )
            # job numbers continue the study's trial numbers (job N is trial N in a fixed sweep dir;
            # re-enqueued interrupted trials are the next numbers)
            self.job_idx = len(study.trials)
            fail_interrupted_trials(study)
            done = finished_trials(study)
            remaining = max(self.n_trials - done, 0)
            log.info(f"Study {self.study_name}: {done} of {self.n_trials} trials done, {remaining} to run")
            self.n_trials = remaining
        with nan_values_fail_trials():
            try:
                super().sweep(arguments)
            except ValueError as exc:  # the library's study.best_trial when no trial completed
                if "No trials are completed" not in str(exc):
                    raise
                raise DDPMError(
                    f"no trial of the sweep completed (all failed or diverged): nothing to report; "
                    f"see the jobs' logs under {self.config.hydra.sweep.dir}"
                ) from exc
