"""``ddpm-train``: train a diffusion model from a composed Hydra config.

ddpm-train experiment=quickstart              # CPU, embedded digits, a few minutes
ddpm-train experiment=ddpm_cifar10            # the paper's CIFAR-10 recipe (GPU)
ddpm-train experiment=ddpm_cifar10 trainer=ddp trainer.devices=8
ddpm-train ... ckpt_path=/path/to/last.ckpt   # resume (into a new run directory)
ddpm-train ... init_from=/models/ddpm-cifar10-32  # fine-tune from weights (any load_model source)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from ddpm.callbacks.run_config import RunConfigCallback
from ddpm.cli.task_wrapper import run_task
from ddpm.errors import ConfigError, RunDirectoryExistsError
from ddpm.io.checkpoint_file import read_lightning_checkpoint
from ddpm.utils.config import config_dir, instantiate_dict
from ddpm.weights.transfer import init_from_weights

log = logging.getLogger("ddpm.train")


def check_run_directory(output_dir: Path) -> None:
    """Refuse to write into a run directory that already holds checkpoints of another run."""
    ckpt_dir = output_dir / "checkpoints"
    if ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):
        raise RunDirectoryExistsError(
            f"run directory {output_dir} already holds checkpoints; refusing to overwrite them: "
            "pick a new hydra.run.dir (resume with ckpt_path=... into a fresh directory)"
        )


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


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Instantiate everything from ``cfg`` and fit.

    Returns the final callback metrics and the objects built (trainer, module, datamodule).
    """
    if torch.cuda.is_available() and cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    L.seed_everything(cfg.seed, workers=True)

    output_dir = Path(cfg.paths.output_dir)
    if cfg.get("init_from") and cfg.get("ckpt_path"):
        raise ConfigError(
            "init_from and ckpt_path exclude each other: ckpt_path resumes a run (weights, optimizer, step), "
            "init_from starts a new one from weights only; pass one of them"
        )
    if cfg.get("ckpt_path"):
        read_lightning_checkpoint(cfg.ckpt_path, mmap=True)  # fail early, in one line, on a bad file
    check_run_directory(output_dir)

    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.module)
    check_shapes(module.net, tuple(datamodule.image_shape), module.diffusion.output_channels_factor)
    if cfg.get("init_from"):  # fine-tuning: weights only, fresh optimizer and step 0
        init_from_weights(module, cfg.init_from, cfg.get("init_pretrained"))
    run_config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = [*instantiate_dict(cfg.get("callbacks")), RunConfigCallback(run_config)]
    loggers = instantiate_dict(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    apply_global_batch_size(datamodule, cfg.get("global_batch_size"), trainer.world_size)
    for lg in loggers:
        lg.log_hyperparams(run_config)

    log.info("Run directory: %s", output_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.global_rank == 0:
        log.info("Finished: %s", {k: round(v, 5) for k, v in metrics.items()})
    return metrics, {"trainer": trainer, "module": module, "datamodule": datamodule}


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics, _ = run_task(train, cfg)
    return metrics.get(cfg.get("optimized_metric") or "", None)


if __name__ == "__main__":
    main()
