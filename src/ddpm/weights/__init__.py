"""Weights from anywhere: our ``ddpm-train`` checkpoints, diffusers folders and pesser state dicts.

The paper's released models by name (:mod:`ddpm.weights.presets`, read from ``configs/model/``); diffusers'
format (:mod:`ddpm.weights.diffusers_unet`: its config and weight names, :mod:`ddpm.weights.diffusers_folder`:
its files); back out as a diffusers folder (:mod:`ddpm.weights.export`), or into a new training run
(:mod:`ddpm.weights.transfer`).
"""

from ddpm.weights.diffusers_folder import load_diffusers_folder
from ddpm.weights.export import export_checkpoint, write_diffusers_folder
from ddpm.weights.load import load_lightning_checkpoint, load_model
from ddpm.weights.loaded import LoadedModel
from ddpm.weights.presets import PRESETS, Preset, get_preset
from ddpm.weights.released import load_pesser_state_dict
from ddpm.weights.transfer import copy_weights, init_from_weights

__all__ = [
    "PRESETS",
    "LoadedModel",
    "Preset",
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
