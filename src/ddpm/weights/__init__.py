"""Weights from anywhere: our ``ddpm-train`` checkpoints, diffusers folders and pesser state dicts."""

from ddpm.weights.load import load_lightning_checkpoint, load_model
from ddpm.weights.released import (
    PRESETS,
    LoadedModel,
    get_preset,
    load_diffusers_folder,
    load_pesser_state_dict,
)

__all__ = [
    "PRESETS",
    "LoadedModel",
    "get_preset",
    "load_diffusers_folder",
    "load_lightning_checkpoint",
    "load_model",
    "load_pesser_state_dict",
]
