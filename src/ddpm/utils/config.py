"""Finding the Hydra configs, the project's OmegaConf resolvers, and instantiating groups of objects.

Importing this module registers the resolvers, so every place that composes the configs (the entry
points, the tests' compose helpers) imports it first:

- ``ddpm_out_channels``: a network's output channels from its input channels and the diffusion's
  ``var_type``, doubled for a learned variance (mean and variance halves). The model configs say
  ``out_channels: ${ddpm_out_channels:${.in_channels},${oc.select:diffusion.var_type,fixed_large}}``
  (fixed_large, the paper's CIFAR-10 choice, when a model config is loaded alone). Checkpoints store
  the resolved number.
- ``ddpm_in_channels``: a network's input channels from the data config's ``grayscale`` key (image
  folders: 1 when true, 3 when false), the model config's own default when the data has no such key
  (``in_channels: ${ddpm_in_channels:${oc.select:data.grayscale,null},3}``); with ``resolution:
  ${oc.select:data.image_size,32}`` a model config follows the data as ``out_channels`` follows the variance.
- ``ddpm_run_id``: the name of a run directory: ``slurm-<job id>`` inside a SLURM job (the same for every
  rank of the job and for every requeue of it, so a requeued job finds its checkpoints), else the given
  default (a timestamp).
- ``ddpm_wandb_name``: the W&B name of a job: its task name and its override set (``a=1,b=2``).
- ``ddpm_wandb_group``: the W&B group of a job: its task name, plus the sweep directory's name in a
  Hydra multirun, so the jobs of one sweep are grouped together.
- ``ddpm_root_dir``: ``DDPM_ROOT`` if set, else the directory the command was started from. Hydra resolves
  ``hydra.sweep.dir`` (built on it) in the sweep's own process, where ``${hydra:runtime.cwd}`` does not
  exist yet, and ``oc.env``'s default is resolved even when the variable is set: hence a resolver.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ddpm.diffusion.gaussian import output_channels_factor
from ddpm.errors import ConfigError
from ddpm.utils.slurm import slurm_job_id


def out_channels_for(in_channels: int, var_type: str) -> int:
    """Output channels of a network for ``var_type`` (the ``ddpm_out_channels`` resolver)."""
    return int(in_channels) * output_channels_factor(var_type)


def in_channels_for(grayscale: bool | None, default: int) -> int:
    """Input channels of a network for the data's ``grayscale`` key (the ``ddpm_in_channels`` resolver):
    1 or 3, or ``default`` when the data config has no such key (None)."""
    if grayscale is None:
        return int(default)
    return 1 if grayscale else 3


def slurm_run_id(default: str) -> str:
    """``slurm-<job id>`` (``slurm-<array job>_<task>`` for array jobs) inside SLURM, else ``default``."""
    job = slurm_job_id()
    return f"slurm-{job}" if job else str(default)


def root_dir() -> str:
    """``DDPM_ROOT``, else the job's start directory (Hydra's ``runtime.cwd``), else the current directory."""
    from hydra.core.hydra_config import HydraConfig

    if os.environ.get("DDPM_ROOT"):
        return os.environ["DDPM_ROOT"]
    return HydraConfig.get().runtime.cwd if HydraConfig.initialized() else os.getcwd()


def in_multirun() -> bool:
    """True inside a job of a Hydra multirun (a sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def in_optimizing_sweep() -> bool:
    """True inside a job of a multirun whose sweeper optimizes the returned metric (Optuna): Hydra's
    basic sweeper only launches the jobs and ignores what they return."""
    from hydra.core.hydra_config import HydraConfig

    if not in_multirun():
        return False
    target = str(HydraConfig.get().sweeper.get("_target_", ""))
    return not target.endswith(".BasicSweeper")


def wandb_group(task_name: str) -> str:
    """``task_name`` for a single run; ``task_name/<sweep directory name>`` for the jobs of a multirun."""
    from hydra.core.hydra_config import HydraConfig

    if not in_multirun():
        return str(task_name)
    return sweep_group(task_name, HydraConfig.get().sweep.dir)


def sweep_group(task_name: str, sweep_dir: str | Path) -> str:
    """The W&B group of a sweep's jobs (and of its summary): ``task_name/<sweep directory name>``."""
    return f"{task_name}/{Path(str(sweep_dir)).name}"


def wandb_name(task_name: str) -> str:
    """``task_name`` followed by the job's overrides (Hydra's ``override_dirname``), if any."""
    from hydra.core.hydra_config import HydraConfig

    overrides = HydraConfig.get().job.override_dirname if HydraConfig.initialized() else ""
    return f"{task_name}[{overrides}]" if overrides else str(task_name)


OmegaConf.register_new_resolver("ddpm_out_channels", out_channels_for, replace=True)
OmegaConf.register_new_resolver("ddpm_in_channels", in_channels_for, replace=True)
OmegaConf.register_new_resolver("ddpm_run_id", slurm_run_id, replace=True)
OmegaConf.register_new_resolver("ddpm_wandb_group", wandb_group, replace=True)
OmegaConf.register_new_resolver("ddpm_wandb_name", wandb_name, replace=True)
OmegaConf.register_new_resolver("ddpm_root_dir", root_dir, replace=True)


def config_dir() -> Path:
    """The ``configs/`` directory: inside the installed package, or at the root of a checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "configs", package.parents[1] / "configs"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ConfigError(f"cannot find the configs directory next to {package}: reinstall with `pip install .`")


def instantiate_dict(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group that has a ``_target_`` (callbacks, loggers)."""
    if not cfg:
        return []
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"expected a mapping of configs with _target_, got {type(cfg).__name__}")
    from hydra.utils import instantiate  # here: importing config_dir (the samplers do) loads no Hydra

    return [instantiate(node) for node in cfg.values() if node and "_target_" in node]
