"""The resumable Optuna sweeper (hparams_search=optuna): SQLite study at a fixed path, a re-run after an
interruption runs only the remaining trials, a trial returning NaN (a diverged ddpm-train job) is FAIL and
the sweep goes on."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

from ddpm.errors import DDPMError
from ddpm.sweeps.optuna_sweeper import (
    INTERRUPTED,
    ResumableOptunaSweeperImpl,
    fail_interrupted_trials,
    finished_trials,
)
from tests.helpers import REPO_ROOT, TINY, run_cli

optuna.logging.set_verbosity(optuna.logging.ERROR)


class FakeLauncher:
    """Returns the given values in turn, one per launched job, and records the launches."""

    def __init__(self, values):
        self.values = list(values)
        self.launched: list[tuple[int, list[str]]] = []

    def launch(self, job_overrides, initial_job_idx):
        returns = []
        for i, overrides in enumerate(job_overrides):
            self.launched.append((initial_job_idx + i, list(overrides)))
            returns.append(JobReturn(status=JobStatus.COMPLETED, _return_value=self.values.pop(0)))
        return returns


def make_sweeper(tmp_path, launcher, n_trials, storage=None):
    sweeper = ResumableOptunaSweeperImpl(
        sampler=optuna.samplers.RandomSampler(seed=0),
        direction="minimize",
        storage=storage,
        study_name="s" if storage else None,
        n_trials=n_trials,
        n_jobs=1,
        max_failure_rate=0.0,
        search_space=None,
        custom_search_space=None,
        params=OmegaConf.create({"x": "interval(0, 1)"}),
    )
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    sweeper.hydra_context = object()
    sweeper.launcher = launcher
    return sweeper


def test_library_tell_raises_on_nan_so_the_subclass_is_needed():
    # the reason for nan_values_fail_trials: optuna 2.x's tell refuses NaN, and the sweeper's fallback too
    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(ValueError):
        study.tell(trial, [math.nan])


def test_nan_trial_is_failed_and_the_sweep_goes_on(tmp_path):
    launcher = FakeLauncher([0.5, math.nan, 0.25])
    storage = f"sqlite:///{tmp_path / 'db' / 's.db'}"
    make_sweeper(tmp_path, launcher, 3, storage).sweep([])
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert study.best_value == 0.25
    assert OmegaConf.load(tmp_path / "optimization_results.yaml").best_value == 0.25
    assert optuna.study.Study.tell.__name__ == "tell" and "nan" not in str(optuna.study.Study.tell)


def test_a_sweep_where_every_trial_diverged_ends_with_one_line(tmp_path):
    with pytest.raises(DDPMError, match="no trial of the sweep completed"):
        make_sweeper(tmp_path, FakeLauncher([math.nan, math.nan]), 2).sweep([])


def test_rerun_counts_the_study_total_and_numbers_jobs_after_its_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = FakeLauncher([3.0, 2.0])
    make_sweeper(tmp_path, first, 2, storage).sweep([])
    second = FakeLauncher([1.0, 0.5])
    make_sweeper(tmp_path, second, 4, storage).sweep([])
    assert [i for i, _ in second.launched] == [2, 3]  # only the 2 remaining trials, job N = trial N
    third = FakeLauncher([])
    make_sweeper(tmp_path, third, 4, storage).sweep([])
    assert third.launched == []
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.value for t in study.trials] == [3.0, 2.0, 1.0, 0.5]


def test_an_interrupted_trial_is_failed_and_its_parameters_run_again(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    stale = study.ask()
    stale.suggest_float("x", 0, 1)  # a sweep killed while this trial ran
    assert fail_interrupted_trials(study) == 1
    assert finished_trials(study) == 1
    assert study.trials[1].state == TrialState.FAIL and study.trials[1].user_attrs[INTERRUPTED]
    again = study.ask()
    assert again.suggest_float("x", 0, 1) == stale.params["x"]


def _trials(db):
    try:
        return optuna.load_study(study_name="train", storage=f"sqlite:///{db}").trials
    except Exception:  # the sweep has not created the study yet
        return []


@pytest.mark.slow  # two ddpm-train sweeps, about 20 s on 2 shared cores
def test_a_sweep_killed_after_two_trials_runs_only_the_other_two(tmp_path):
    args = [
        sys.executable,
        "-m",
        "ddpm.cli.ddpm_train",
        "hparams_search=optuna",
        *TINY,
        "trainer.max_steps=1",
        "trainer.val_check_interval=1",
        "hydra.sweeper.n_trials=4",
        f"paths.root_dir={tmp_path}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    db = tmp_path / "logs" / "train" / "optuna" / "train.db"
    first = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while sum(t.state == TrialState.COMPLETE for t in _trials(db)) < 2:
        assert first.poll() is None, first.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert sum(t.state == TrialState.COMPLETE for t in _trials(db)) == 2

    second = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    launched = [ln for ln in second.stdout.splitlines() + second.stderr.splitlines() if "\t#" in ln]
    assert len(launched) == 2, launched  # trials 3 and 4 only
    trials = _trials(db)
    counted = [t for t in trials if not t.user_attrs.get(INTERRUPTED)]
    assert [t.state for t in counted] == [TrialState.COMPLETE] * 4
    # every counted trial has its job directory (job N = trial N) in the fixed sweep dir
    sweep = db.parent / "train"
    assert all((sweep / str(t.number) / ".hydra" / "config.yaml").is_file() for t in counted)


@pytest.mark.slow  # a 2-trial ddpm-train sweep, about 15 s
def test_a_diverging_trial_fails_and_the_sweep_goes_on(tmp_path):
    args = [
        "ddpm-train",
        "hparams_search=optuna",
        *TINY,
        "trainer.max_steps=6",
        "trainer.val_check_interval=6",
        "trainer.gradient_clip_val=null",
        "module.warmup_steps=0",
        "+callbacks.divergence_guard._target_=ddpm.callbacks.DivergenceGuard",
        "+callbacks.divergence_guard.check_every_n_steps=1",
        "hydra.sweeper.n_trials=2",
        "module.optimizer.lr=choice(2e-4,1e8)",  # the seeded TPE tries 1e8 first, then 2e-4
        f"paths.root_dir={tmp_path}",
    ]
    result = run_cli(args, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "returned NaN (diverged): marked FAIL, the sweep goes on" in result.stdout + result.stderr
    trials = _trials(tmp_path / "logs" / "train" / "optuna" / "train.db")
    states = {t.params["module.optimizer.lr"]: t.state for t in trials}
    assert states == {1e8: TrialState.FAIL, 2e-4: TrialState.COMPLETE}
