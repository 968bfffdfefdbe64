"""Weights from anywhere: our ``ddpm-train`` checkpoints, diffusers folders and pesser state dicts.

Back out as a diffusers folder (:mod:`ddpm.weights.export`), or into a new training run
(:mod:`ddpm.weights.transfer`).
"""

from ddpm.weights.export import export_checkpoint, write_diffusers_folder
from ddpm.weights.load import load_lightning_checkpoint, load_model
from ddpm.weights.released import (
    PRESETS,
    LoadedModel,
    get_preset,
    load_diffusers_folder,
    load_pesser_state_dict,
)
from ddpm.weights.transfer import copy_weights, init_from_weights

__all__ = [
    "PRESETS",
    "LoadedModel",
    "copy_weights",
    "export_checkpoint",
    "get_preset",
    "init_from_weights",
    "load_diffusers_folder",
    "load_lightning_checkpoint",
    "load_model",
    "load_pesser_state_dict",
    "write_diffusers_folder",
]
