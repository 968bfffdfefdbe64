"""``ddpm-export``: write a checkpoint as a diffusers ``DDPMPipeline`` folder (a Hydra app).

    ddpm-export ckpt_path=logs/ddpm_cifar10/runs/<run>/checkpoints/last.ckpt output_dir=exports/cifar10
    ddpm-export ckpt_path=... output_dir=... use_ema=false                  # the raw weights
    ddpm-export ckpt_path=... output_dir=... push_to_hub=me/ddpm-cifar10    # + upload to the Hub

``DDPMPipeline.from_pretrained(output_dir)`` then samples the model; :mod:`ddpm.weights.export` does the work.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from ddpm.cli.task_wrapper import run_app, run_task
from ddpm.utils.config import config_dir
from ddpm.weights.export import export_checkpoint, hub_module, push_to_hub

USAGE = "ddpm-export ckpt_path=<a .ckpt, diffusers folder or pesser file> output_dir=<new folder>"


def export(cfg: DictConfig) -> Path:
    """The ``ddpm-export`` task: export the checkpoint, then push it if asked; returns the folder."""
    hub = hub_module() if cfg.get("push_to_hub") else None  # a missing package fails before any work
    clip = cfg.get("clip_sample")
    folder = export_checkpoint(
        cfg.ckpt_path,
        cfg.output_dir,
        preset=cfg.get("pretrained"),
        use_ema=bool(cfg.use_ema),
        clip_sample=None if clip is None else bool(clip),
    )
    print(f"Wrote {folder} (load it with diffusers.DDPMPipeline.from_pretrained)")
    if hub is not None:
        url = push_to_hub(folder, str(cfg.push_to_hub), private=bool(cfg.hub_private), hub=hub)
        print(f"Pushed to {url}")
    return folder


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="export")
def hydra_main(cfg: DictConfig) -> None:
    run_task(export, cfg, usage=USAGE)


def main() -> None:
    run_app(hydra_main)


if __name__ == "__main__":
    main()
