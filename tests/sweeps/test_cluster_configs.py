"""The cluster configs compose to what SLURM / submitit / Optuna need (no cluster needed): the SLURM
launcher's nodes and tasks follow the trainer, requeueing is on, the Optuna study sits at a fixed path."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ddpm.utils.config import config_dir


@pytest.fixture(autouse=True)
def _root_dir(monkeypatch):
    """The project root as a user sets it, with DDPM_ROOT (docs/configuration.md): fixed paths to compare."""
    monkeypatch.setenv("DDPM_ROOT", "/root_dir")


def composed(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_slurm_launcher_follows_the_trainer():
    cfg = composed(["hydra/launcher=slurm", "trainer=slurm", "trainer.devices=4", "trainer.num_nodes=2"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.accelerator == "gpu"
    assert launcher.additional_parameters.requeue is True
    assert 0 < launcher.signal_delay_s < launcher.timeout_min * 60
    assert launcher.name == "train"


def test_slurm_cpu_launcher_asks_for_no_gpu_and_one_task_per_process():
    cfg = composed(["hydra/launcher=slurm_cpu", "trainer=slurm_cpu"])
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (1, 2, None)
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.devices == 2


def test_single_device_trainers_give_one_node_and_one_task():
    cfg = composed(["hydra/launcher=slurm", "trainer=gpu"])  # trainer=gpu has no num_nodes
    assert (cfg.hydra.launcher.nodes, cfg.hydra.launcher.tasks_per_node) == (1, 1)


def test_local_launcher_runs_each_job_in_its_own_process():
    launcher = composed(["hydra/launcher=local"]).hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.LocalLauncher")
    assert launcher.tasks_per_node == 1


@pytest.mark.parametrize("task", ["train", "table2"])
def test_optuna_study_and_sweep_dir_are_fixed_paths(task):
    cfg = composed(["hparams_search=optuna", f"task_name={task}"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.ddpm_sweepers.ResumableOptunaSweeper"
    assert sweeper.storage == f"sqlite:////root_dir/logs/{task}/optuna/{task}.db"
    assert cfg.hydra.sweep.dir == f"/root_dir/logs/{task}/optuna/{task}"  # no timestamp: a re-run continues
    assert sweeper.study_name == task and cfg.hydra.mode.name == "MULTIRUN"
