"""``ddpm-train``: train a diffusion model from a composed Hydra config.

ddpm-train experiment=quickstart              # CPU, embedded digits, a few minutes
ddpm-train experiment=ddpm_cifar10            # the paper's CIFAR-10 recipe (GPU)
ddpm-train experiment=ddpm_cifar10 trainer=ddp trainer.devices=8
ddpm-train ... ckpt_path=/path/to/last.ckpt   # start from another run's checkpoint (weights, optimizer, step)
ddpm-train ... init_from=/models/ddpm-cifar10-32  # fine-tune from weights (any load_model source)
ddpm-train ... hydra.run.dir=logs/my_run      # launched again (crash, requeue): continues it

A job's run directory is stable (runs/slurm-<job id> inside SLURM, or a fixed hydra.run.dir): launched
again, the same command continues the newest complete checkpoint there (resume=auto) and logs into the
same W&B run. In a Hydra multirun a diverged job returns NaN as its optimized metric, so sweepers (Optuna)
record a failed trial and go on.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from ddpm.callbacks.run_config import RunConfigCallback
from ddpm.cli.task_wrapper import run_app, run_task
from ddpm.errors import ConfigError, DivergenceError
from ddpm.io.checkpoint_file import read_lightning_checkpoint
from ddpm.lightning.resume import resume_checkpoint
from ddpm.sweeps.objective import metric_problem
from ddpm.utils.config import config_dir, in_multirun, in_optimizing_sweep, instantiate_dict
from ddpm.utils.device import check_trainer_devices
from ddpm.utils.precision import set_tf32_policy
from ddpm.utils.wandb_run import attach_kept_run_id
from ddpm.weights.transfer import init_from_weights

log = logging.getLogger("ddpm.train")


def check_shapes(net: torch.nn.Module, image_shape: tuple[int, int, int], out_factor: int) -> None:
    """The data's (C, H, W) must fit the network's channels and resolution."""
    channels, height, width = image_shape
    resolution = getattr(net, "resolution", None)
    in_channels = getattr(net, "in_channels", None)
    out_channels = getattr(net, "out_channels", None)
    if resolution is not None and (height, width) != (resolution, resolution):
        raise ConfigError(
            f"the data's images are {height}x{width} but the model expects {resolution}x{resolution}: "
            f"set model.resolution={height} or data.image_size={resolution}"
        )
    if in_channels is not None and channels != in_channels:
        raise ConfigError(
            f"the data has {channels} channels but model.in_channels={in_channels}: "
            f"set model.in_channels={channels}"
        )
    if out_channels is not None and out_channels != channels * out_factor:
        raise ConfigError(
            f"model.out_channels={out_channels} but this diffusion needs {channels * out_factor} "
            f"({channels} data channels x {out_factor}): set model.out_channels={channels * out_factor}"
        )


def apply_global_batch_size(datamodule: Any, global_batch_size: int | None, world_size: int) -> None:
    """Split a global batch (128 in the paper) evenly over the ranks."""
    if not global_batch_size:
        return
    if global_batch_size % world_size:
        raise ConfigError(
            f"global_batch_size={global_batch_size} is not divisible by the {world_size} ranks: "
            "choose a multiple of the number of devices"
        )
    datamodule.batch_size = global_batch_size // world_size


def starting_checkpoint(cfg: DictConfig, output_dir: Path) -> str | None:
    """The checkpoint to start from: the run directory's own newest one (resume=auto), else ``ckpt_path``
    (checked to read back completely, so a bad file fails in one line before anything is built)."""
    if cfg.get("init_from") and cfg.get("ckpt_path"):
        raise ConfigError(
            "init_from and ckpt_path exclude each other: ckpt_path resumes a run (weights, optimizer, step), "
            "init_from starts a new one from weights only; pass one of them"
        )
    ckpt_path = resume_checkpoint(cfg, output_dir)
    if ckpt_path is not None and ckpt_path == cfg.get("ckpt_path"):
        read_lightning_checkpoint(ckpt_path, mmap=True)
    return ckpt_path


def training_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The configured callbacks, without the progress bar when ``trainer.enable_progress_bar=false``
    (Lightning refuses a progress-bar callback then)."""
    callbacks = instantiate_dict(cfg.get("callbacks"))
    if cfg.trainer.get("enable_progress_bar", True):
        return callbacks
    return [cb for cb in callbacks if not isinstance(cb, ProgressBar)]


def train_job(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """:func:`train`; in a multirun a diverged job reports NaN as its optimized metric instead of ending
    the sweep (Optuna records a NaN trial as failed and goes on); a launch whose SLURM job was requeued
    ends without a result. In an optimizing sweep (Optuna) a job that could never log ``optimized_metric``
    (validation past ``trainer.max_steps``, ...: :func:`ddpm.sweeps.objective.metric_problem`) is refused
    before training; Hydra's basic sweeper ignores the metric, so its jobs are not."""
    problem = metric_problem(cfg) if in_optimizing_sweep() else None
    if problem is not None:
        raise ConfigError(problem)
    try:
        metrics, objects = train(cfg)
    except DivergenceError as exc:
        if not in_multirun():
            raise
        print(f"error: {exc}", file=sys.stderr)
        return {str(cfg.get("optimized_metric") or "diverged"): math.nan}, {}
    if any(getattr(cb, "requeued", False) for cb in objects["trainer"].callbacks):
        # The requeued job finishes the run. Returning would hand a half-done run's metric to the
        # launcher (submitit writes it as the job's result); SystemExit is no result, as in submitit's
        # own requeue. The task wrapper still finishes W&B on the way out.
        log.info("the SLURM job was requeued: this launch ends here; the requeued job continues the run")
        raise SystemExit(0)
    return metrics, objects


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Instantiate everything from ``cfg`` and fit.

    Returns the final callback metrics and the objects built (trainer, module, datamodule).
    """
    check_trainer_devices(cfg.trainer.get("accelerator"), cfg.trainer.get("devices"))
    if torch.cuda.is_available():
        set_tf32_policy(cfg.get("float32_matmul_precision"))  # matmuls and cuDNN convolutions alike
    L.seed_everything(cfg.seed, workers=True)

    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = starting_checkpoint(cfg, output_dir)
    continuing = ckpt_path is not None and ckpt_path != cfg.get("ckpt_path")

    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.module)
    check_shapes(module.net, tuple(datamodule.image_shape), module.diffusion.output_channels_factor)
    if cfg.get("init_from") and not continuing:  # fine-tuning: weights only, fresh optimizer and step 0
        init_from_weights(module, cfg.init_from, cfg.get("init_pretrained"))
    attach_kept_run_id(cfg.get("logger"), output_dir)  # before the config goes into the checkpoints
    run_config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = [*training_callbacks(cfg), RunConfigCallback(run_config)]
    loggers = instantiate_dict(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    apply_global_batch_size(datamodule, cfg.get("global_batch_size"), trainer.world_size)
    for lg in loggers:
        lg.log_hyperparams(run_config)

    log.info("Run directory: %s", output_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.global_rank == 0:
        log.info("Finished: %s", {k: round(v, 5) for k, v in metrics.items()})
    return metrics, {"trainer": trainer, "module": module, "datamodule": datamodule}


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    metrics, _ = run_task(train_job, cfg)
    return metrics.get(cfg.get("optimized_metric") or "", None)


def main() -> float | None:
    return run_app(hydra_main)


if __name__ == "__main__":
    main()
