"""The resumable Optuna sweeper (hparams_search=optuna): SQLite study at a fixed path; n_trials counts the
trials with a result (COMPLETE, or diverged: a NaN ddpm-train job); a trial without one (no metric logged,
the job raised, the sweep interrupted) is FAIL in one line and the same command runs its parameters again
first; a sweep whose jobs can never log the metric is refused before its first trial; no sweep ends in a
traceback."""

from __future__ import annotations

import functools
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

from ddpm.errors import ConfigError, DDPMError
from ddpm.sweeps.objective import metric_problem
from ddpm.sweeps.optuna_sweeper import (
    DIVERGED,
    ERROR,
    INTERRUPTED,
    RERUN_OF,
    ResumableOptunaSweeperImpl,
    consecutive_runs,
    counted_trials,
    fail_interrupted_trials,
)
from tests.helpers import TINY, compose_train, run_cli

optuna.logging.set_verbosity(optuna.logging.ERROR)

# a job config of 20 steps validating every 500 (the quickstart cut short): val/loss_ema never logged
SHORT_JOB = {
    "optimized_metric": "val/loss_ema",
    "trainer": {"max_steps": 20, "val_check_interval": 500, "check_val_every_n_epoch": None},
}
NO_METRIC_LINE = (
    "trial 0 logged no val/loss_ema (validation runs every trainer.val_check_interval=500 steps, the trial "
    "stopped at trainer.max_steps=20): lower trainer.val_check_interval or raise trainer.max_steps"
)


class FakeLauncher:
    """Returns the given outcomes in turn, one per launched job, and records the launches. An outcome is
    a value (a completed job), an exception (a failed job), a BaseException class (raised by the launch
    itself: a job that exits the sweep, Ctrl-C) or a JobReturn."""

    def __init__(self, values, cfg=None):
        self.values = list(values)
        self.cfg = OmegaConf.create(cfg) if cfg is not None else None
        self.launched: list[tuple[int, list[str]]] = []

    def launch(self, job_overrides, initial_job_idx):
        returns = []
        for i, overrides in enumerate(job_overrides):
            self.launched.append((initial_job_idx + i, list(overrides)))
            value = self.values.pop(0)
            if isinstance(value, type) and issubclass(value, BaseException):
                raise value(2)
            if isinstance(value, JobReturn):
                returns.append(value)
            elif isinstance(value, Exception):
                returns.append(JobReturn(status=JobStatus.FAILED, _return_value=value, cfg=self.cfg))
            else:
                returns.append(JobReturn(status=JobStatus.COMPLETED, _return_value=value, cfg=self.cfg))
        return returns


def make_sweeper(tmp_path, launcher, n_trials, storage=None, **options):
    """The sweeper over x in [0, 1]; ``options``: n_jobs, max_failure_rate, params, config (the sweep's)."""
    sweeper = ResumableOptunaSweeperImpl(
        sampler=optuna.samplers.RandomSampler(seed=0),
        direction="minimize",
        storage=storage,
        study_name="s" if storage else None,
        n_trials=n_trials,
        n_jobs=options.get("n_jobs", 1),
        max_failure_rate=options.get("max_failure_rate", 0.0),
        search_space=None,
        custom_search_space=None,
        params=OmegaConf.create(options.get("params", {"x": "interval(0, 1)"})),
    )
    config = OmegaConf.create(options.get("config", {}))
    config.merge_with({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    sweeper.config = config
    sweeper.hydra_context = object()
    sweeper.launcher = launcher
    return sweeper


def load(storage):
    return optuna.load_study(study_name="s", storage=storage)


def test_library_tell_raises_on_nan_so_the_subclass_is_needed():
    # the reason the sweeper tells a NaN trial FAIL itself: optuna 2.x's tell refuses NaN
    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(ValueError):
        study.tell(trial, [math.nan])


def test_library_best_trial_of_an_rdb_study_without_a_complete_trial_raises(tmp_path):
    # the library's sweep ended in this traceback (optuna 2.10's RDB storage) when no trial completed
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    study.tell(study.ask(), state=TrialState.FAIL)
    with pytest.raises(ValueError, match="Record does not exist"):
        _ = study.best_trial


def test_nan_trial_is_failed_counted_and_the_sweep_goes_on(tmp_path):
    launcher = FakeLauncher([0.5, math.nan, 0.25])
    storage = f"sqlite:///{tmp_path / 'db' / 's.db'}"
    make_sweeper(tmp_path, launcher, 3, storage).sweep([])
    study = load(storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].user_attrs[DIVERGED] and counted_trials(study) == 3
    assert study.best_value == 0.25
    assert OmegaConf.load(tmp_path / "optimization_results.yaml").best_value == 0.25
    assert optuna.study.Study.tell.__name__ == "tell" and "nan" not in str(optuna.study.Study.tell)
    again = FakeLauncher([])
    make_sweeper(tmp_path, again, 3, storage).sweep([])
    assert again.launched == []  # a diverged trial has a result: it is not run again


@pytest.mark.parametrize("rdb", [False, True])
def test_a_sweep_where_every_trial_diverged_ends_with_one_line(tmp_path, rdb):
    storage = f"sqlite:///{tmp_path / 's.db'}" if rdb else None
    with pytest.raises(DDPMError, match="no trial of the sweep completed") as caught:
        make_sweeper(tmp_path, FakeLauncher([math.nan, math.nan]), 2, storage).sweep([])
    assert "\n" not in str(caught.value) and "2 diverged" in str(caught.value)
    assert not (tmp_path / "optimization_results.yaml").exists()


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
    study = load(storage)
    assert [t.value for t in study.trials] == [3.0, 2.0, 1.0, 0.5]


def test_an_interrupted_trial_is_failed_and_its_parameters_run_again(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    stale = study.ask()
    stale.suggest_float("x", 0, 1)  # a sweep killed while this trial ran
    assert fail_interrupted_trials(study) == 1
    assert counted_trials(study) == 1
    assert study.trials[1].state == TrialState.FAIL and study.trials[1].user_attrs[INTERRUPTED]
    again = study.ask()
    assert again.suggest_float("x", 0, 1) == stale.params["x"]


def test_a_trial_that_logged_no_metric_fails_in_one_line_is_not_counted_and_runs_again_first(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = FakeLauncher([None], cfg=SHORT_JOB)
    with pytest.raises(DDPMError) as caught:
        make_sweeper(tmp_path, first, 2, storage, config={"optimized_metric": "val/loss_ema"}).sweep([])
    message = str(caught.value)
    assert message.startswith(NO_METRIC_LINE) and "\n" not in message
    assert "the same command runs the failed trials again" in message
    (failed,) = load(storage).trials
    assert failed.state == TrialState.FAIL and failed.user_attrs[ERROR] == NO_METRIC_LINE
    assert counted_trials(load(storage)) == 0 and not (tmp_path / "optimization_results.yaml").exists()

    second = FakeLauncher([2.0, 1.0])
    make_sweeper(tmp_path, second, 2, storage).sweep([])
    assert [i for i, _ in second.launched] == [1, 2]  # job N = trial N
    assert second.launched[0][1] == first.launched[0][1]  # the failed trial's parameters first
    trials = load(storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].user_attrs[RERUN_OF] == 0 and counted_trials(load(storage)) == 2
    assert OmegaConf.load(tmp_path / "optimization_results.yaml").best_value == 1.0


def test_a_trial_without_a_known_reason_names_the_metric_and_optimized_metric(tmp_path):
    sweeper = make_sweeper(tmp_path, FakeLauncher([None]), 1, config={"optimized_metric": "eval/x"})
    with pytest.raises(DDPMError, match=r"^trial 0 logged no eval/x .*optimized_metric=") as caught:
        sweeper.sweep([])
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "error, line",
    [
        (RuntimeError("boom\nsecond line"), "trial 0 failed: RuntimeError: boom"),
        (ConfigError("a bad value: set it right"), "trial 0 failed: a bad value: set it right"),
    ],
)
def test_a_job_that_raised_is_a_failed_trial_not_counted_and_the_sweep_goes_on(tmp_path, caplog, error, line):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    launcher = FakeLauncher([error, 0.5])
    make_sweeper(tmp_path, launcher, 2, storage, max_failure_rate=1.0).sweep([])
    trials = load(storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs[ERROR] == line and counted_trials(load(storage)) == 1
    assert any(r.getMessage().startswith(line) for r in caplog.records)  # one warning line, no traceback
    assert OmegaConf.load(tmp_path / "optimization_results.yaml").best_value == 0.5
    again = FakeLauncher([0.25])
    make_sweeper(tmp_path, again, 2, storage).sweep([])
    assert [i for i, _ in again.launched] == [2] and again.launched[0][1] == launcher.launched[0][1]


@pytest.mark.parametrize("rate, stops", [(0.4, True), (0.5, False)])
def test_max_failure_rate_stops_a_batch_with_more_failures_in_one_line(tmp_path, rate, stops):
    launcher = FakeLauncher([1.0, ConfigError("no such file: fix it"), 2.0, 3.0])
    sweeper = make_sweeper(tmp_path, launcher, 4, n_jobs=2, max_failure_rate=rate)
    if not stops:
        sweeper.sweep([])
        assert (
            len(launcher.launched) == 4
        )  # one launch runs the missing count; the failure waits for the next
        return
    with pytest.raises(DDPMError) as caught:
        sweeper.sweep([])
    message = str(caught.value)
    assert message.startswith("trial 1 failed: no such file: fix it; the sweep stops") and "\n" not in message
    assert "max_failure_rate=0.4" in message and "the same command runs the failed trials again" in message
    assert len(launcher.launched) == 2


def test_a_sweep_where_every_trial_failed_ends_with_one_line_and_no_results(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"  # optuna 2.10's RDB best_trial: "Record does not exist"
    sweeper = make_sweeper(
        tmp_path, FakeLauncher([None, RuntimeError("x")]), 2, storage, max_failure_rate=1.0
    )
    with pytest.raises(DDPMError, match=r"no trial of the sweep completed \(0 diverged, 2 failed") as caught:
        sweeper.sweep([])
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "optimization_results.yaml").exists()


@pytest.mark.parametrize("exit_type", [SystemExit, KeyboardInterrupt])
def test_a_launch_ended_by_an_exit_marks_its_trial_interrupted_and_it_runs_again(tmp_path, exit_type):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = FakeLauncher([exit_type])
    with pytest.raises(exit_type):
        make_sweeper(tmp_path, first, 1, storage).sweep([])
    (trial,) = load(storage).trials
    assert trial.state == TrialState.FAIL and trial.user_attrs[INTERRUPTED]
    second = FakeLauncher([1.0])
    make_sweeper(tmp_path, second, 1, storage).sweep([])
    assert second.launched == [(1, first.launched[0][1])]


def test_an_error_of_the_launcher_itself_fails_its_trials(tmp_path):
    class BrokenLauncher:
        def launch(self, job_overrides, initial_job_idx):
            raise RuntimeError("submitit: job 12_0 failed")

    with pytest.raises(
        DDPMError, match="^trial 0 failed: RuntimeError: submitit: job 12_0 failed; the sweep"
    ):
        make_sweeper(tmp_path, BrokenLauncher(), 1).sweep([])


def test_a_grid_sampler_sweep_is_capped_at_its_grid_and_ends_cleanly(tmp_path):
    launcher = FakeLauncher([2.0, 1.0])
    sweeper = make_sweeper(tmp_path, launcher, 5, params={"x": "choice(1, 2)"})
    sweeper.sampler = functools.partial(optuna.samplers.GridSampler)
    sweeper.sweep([])  # the exhausted grid's Study.stop outside optimize is no error
    assert sorted(overrides for _, overrides in launcher.launched) == [["x=1"], ["x=2"]]
    assert OmegaConf.load(tmp_path / "optimization_results.yaml").best_value == 1.0


def test_consecutive_runs_launch_job_n_as_trial_n():
    assert consecutive_runs([3, 4, 6]) == [(0, 2), (2, 3)]
    assert consecutive_runs([5]) == [(0, 1)] and consecutive_runs([]) == []


def test_a_sweep_that_can_never_log_its_metric_is_refused_before_its_first_trial(tmp_path):
    storage = f"sqlite:///{tmp_path / 'db' / 's.db'}"
    launcher = FakeLauncher([])
    with pytest.raises(ConfigError) as caught:
        make_sweeper(tmp_path, launcher, 2, storage, config=SHORT_JOB).sweep(["trainer.max_steps=20"])
    assert str(caught.value) == (
        "optimized_metric=val/loss_ema is never logged (validation runs every trainer.val_check_interval=500 "
        "steps, a trial stops at trainer.max_steps=20): lower trainer.val_check_interval or raise "
        "trainer.max_steps"
    )
    assert launcher.launched == [] and not (tmp_path / "db").exists()


def test_a_sweep_over_trainer_keys_leaves_the_metric_check_to_each_job(tmp_path):
    params = {"x": "interval(0, 1)", "trainer.max_steps": "choice(20, 1000)"}
    launcher = FakeLauncher([1.0])
    make_sweeper(tmp_path, launcher, 1, config=SHORT_JOB, params=params).sweep([])
    assert len(launcher.launched) == 1


@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    """``metric_problem`` of the training config composed with some overrides."""
    out = tmp_path_factory.mktemp("composed")
    return lambda *overrides: metric_problem(compose_train(list(overrides), out))


def test_metric_problem_of_composed_validation_configs(composed):
    assert composed("experiment=quickstart") is None
    assert composed("experiment=quickstart", "trainer.max_steps=20") == (
        "optimized_metric=val/loss_ema is never logged (validation runs every trainer.val_check_interval=500 "
        "steps, a trial stops at trainer.max_steps=20): lower trainer.val_check_interval or raise "
        "trainer.max_steps"
    )
    assert composed("experiment=quickstart", "trainer.max_steps=20", "trainer.val_check_interval=20") is None
    assert composed("trainer.limit_val_batches=0") == (
        "optimized_metric=val/loss_ema is never logged (validation is off: trainer.limit_val_batches=0): "
        "set trainer.limit_val_batches above 0"
    )
    assert composed("debug=fdr") is None  # fast_dev_run validates once
    assert composed("trainer.max_steps=20", "optimized_metric=train/loss") is None  # every step
    assert composed("trainer.max_steps=20", "optimized_metric=null") is None


def test_metric_problem_of_composed_evaluation_and_unknown_metrics(composed):
    assert composed("optimized_metric=val/los") == (
        "optimized_metric=val/los is never logged (nothing in this config logs it; it logs train/loss, "
        "train/grad_norm, val/loss, val/loss_ema, lr-*): set optimized_metric to one of these"
    )
    fid = ("callbacks=eval_fid", "optimized_metric=eval/fid_10k_ddim100_train")
    assert composed(*fid) is None
    assert composed(*fid, "trainer.max_steps=100") == (
        "optimized_metric=eval/fid_10k_ddim100_train is never logged (callbacks.fid evaluates every "
        "callbacks.fid.every_n_steps=50000 steps, a trial stops at trainer.max_steps=100): lower "
        "callbacks.fid.every_n_steps or raise trainer.max_steps"
    )
    digits = ("experiment=quickstart", "optimized_metric=eval/digits_score_180")
    assert "evaluates only at the end of training" in composed(*digits)
    assert composed(*digits, "+callbacks.digits_score.every_n_steps=500") is None
    # a callback of a class this check does not know may log anything: never refused for the name
    assert (
        composed(
            "optimized_metric=my/metric",
            "+callbacks.mine._target_=lightning.pytorch.callbacks.DeviceStatsMonitor",
        )
        is None
    )


def test_an_optuna_job_refuses_a_metric_it_cannot_log_a_basic_sweep_job_does_not(tmp_path):
    from hydra.core.hydra_config import HydraConfig

    from ddpm.cli.ddpm_train import train_job

    previous = HydraConfig.instance().cfg
    short = ["hydra.mode=MULTIRUN", "experiment=quickstart", "trainer.max_steps=20"]
    try:
        cfg = compose_train([*short, "hparams_search=optuna"], tmp_path)
        with pytest.raises(ConfigError, match="optimized_metric=val/loss_ema is never logged"):
            train_job(cfg)
        # Hydra's basic sweeper ignores what a job returns: the README's lr sweep of 20 steps trains
        cfg = compose_train([*short, *TINY, "trainer.max_steps=1", "trainer.val_check_interval=5"], tmp_path)
        metrics, _ = train_job(cfg)
        assert "val/loss_ema" not in metrics and "train/loss" in metrics
    finally:
        HydraConfig.instance().cfg = previous  # no other test runs "in a multirun"


def _trials(db):
    if not (db.parent / db.stem / "0").exists():
        return []  # opening the study while the sweep creates it races on its schema: wait for job 0
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
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    db = tmp_path / "logs" / "train" / "optuna" / "train.db"
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while sum(t.state == TrialState.COMPLETE for t in _trials(db)) < 2:
        assert first.poll() is None, first.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert sum(t.state == TrialState.COMPLETE for t in _trials(db)) == 2

    second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
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
    ]
    result = run_cli(args, cwd=tmp_path, timeout=300, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "returned NaN (diverged): marked FAIL, the sweep goes on" in result.stdout + result.stderr
    trials = _trials(tmp_path / "logs" / "train" / "optuna" / "train.db")
    states = {t.params["module.optimizer.lr"]: t.state for t in trials}
    assert states == {1e8: TrialState.FAIL, 2e-4: TrialState.COMPLETE}
    assert [t.user_attrs.get(DIVERGED, False) for t in trials] == [True, False]  # counted: not run again
