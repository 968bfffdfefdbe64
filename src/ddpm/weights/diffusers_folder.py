"""Reading a local diffusers folder (``UNet2DModel`` or ``DDPMPipeline``) into our U-Net and diffusion.

The released DDPM weights were published in this format (``google/ddpm-cifar10-32``,
``google/ddpm-church-256``, ...), and ``ddpm-export`` writes it (:mod:`ddpm.weights.export`, with the file
names here). A model folder holds ``config.json`` + ``diffusion_pytorch_model.safetensors`` (or ``.bin``); a
pipeline folder holds ``model_index.json``, ``unet/`` and ``scheduler/scheduler_config.json``. The names are
translated by :mod:`ddpm.weights.diffusers_unet`; diffusers itself is never imported.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ddpm.diffusion.gaussian import VAR_TYPES, GaussianDiffusion
from ddpm.errors import CheckpointError
from ddpm.io.checkpoint_file import read_checkpoint
from ddpm.models.unet import UNet
from ddpm.weights.diffusers_unet import convert_diffusers_state_dict, unet_kwargs_from_diffusers_config
from ddpm.weights.loaded import LoadedModel, check_var_type
from ddpm.weights.presets import (
    ARCHITECTURE,
    check_against_preset,
    get_preset,
    paper_diffusion,
    paper_var_type,
)

log = logging.getLogger(__name__)

MODEL_INDEX = "model_index.json"
UNET_DIR, SCHEDULER_DIR = "unet", "scheduler"
CONFIG_NAME = "config.json"
SCHEDULER_CONFIG = "scheduler_config.json"
UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"  # what ddpm-export writes
WEIGHTS_NAMES = (UNET_WEIGHTS, "diffusion_pytorch_model.bin")  # what is read, in this order

# diffusers' names -> ours (``ddpm.weights.export`` writes the inverse)
DIFFUSERS_SCHEDULES = {"linear": "linear", "scaled_linear": "quadratic", "squaredcos_cap_v2": "cosine"}
PREDICTION_TYPES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
# the key ``ddpm-export`` adds to scheduler_config.json (diffusers drops keys starting with "_"): its
# variance_type is then the training run's, not a default to be replaced by the paper's choice
EXPORT_MARKER = "_ddpm_export"


def _names_another_class(config: Path) -> bool:
    """Whether ``config`` names a ``_class_name`` other than ``UNet2DModel`` (a pipeline's own config);
    an unreadable one names none (reading it later says what is wrong)."""
    try:
        name = json.loads(config.read_text()).get("_class_name", "UNet2DModel")
    except (OSError, ValueError, AttributeError):
        return False
    return name != "UNet2DModel"


def unet_folder(path: str | Path) -> Path | None:
    """The folder holding the ``UNet2DModel``'s ``config.json``: ``path`` itself, or ``path/unet`` of a
    pipeline folder; None when ``path`` is no diffusers folder (the one test of that)."""
    path = Path(path)
    own, inner = path / CONFIG_NAME, path / UNET_DIR / CONFIG_NAME
    if not path.is_dir() or not (own.is_file() or inner.is_file()):
        return None
    if inner.is_file() and (not own.is_file() or _names_another_class(own)):
        return path / UNET_DIR
    return path


def is_diffusers_folder(path: str | Path) -> bool:
    """Whether ``path`` is a diffusers model or pipeline folder (``config.json`` or ``unet/config.json``)."""
    return unet_folder(path) is not None


def _load_weights(model_dir: Path) -> dict[str, Tensor]:
    """The tensors of ``model_dir``'s weights file (safetensors first, else the ``.bin`` pickle, read as
    data), on the CPU."""
    for name in WEIGHTS_NAMES:
        path = model_dir / name
        if not path.is_file():
            continue
        if name.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return read_checkpoint(path)
    raise FileNotFoundError(
        f"load_diffusers_unet: no weights in {model_dir}: expected one of {list(WEIGHTS_NAMES)} "
        "(sharded or variant checkpoints such as *.fp16.safetensors are not supported; "
        "re-save the model with UNet2DModel.save_pretrained)"
    )


def load_diffusers_unet(folder: str | Path) -> UNet:
    """Build our :class:`UNet` from a local diffusers ``UNet2DModel`` folder or pipeline folder.

    :param folder: the model folder, or a pipeline folder (its ``unet/`` is used).
    :return: the U-Net in eval mode, weights in float32.
    :raises FileNotFoundError: no folder, no ``config.json`` or no weights file.
    :raises ValueError: a config the DDPM U-Net cannot build, or weights that do not fit it.
    """
    model_dir = unet_folder(folder)
    if model_dir is None:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"load_diffusers_unet: {folder} is not a directory; pass a local diffusers model folder"
            )
        raise FileNotFoundError(
            f"load_diffusers_unet: no {CONFIG_NAME} in {folder} or {folder / UNET_DIR}; "
            "pass the folder written by UNet2DModel.save_pretrained (or a pipeline folder with unet/)"
        )
    config_path = model_dir / CONFIG_NAME
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"load_diffusers_unet: {config_path} is not valid JSON: {e}") from e
    try:
        kwargs = unet_kwargs_from_diffusers_config(config)
    except ValueError as e:
        raise ValueError(f"{config_path}: {e}") from e
    try:
        converted = convert_diffusers_state_dict(_load_weights(model_dir), kwargs)
    except ValueError as e:
        raise ValueError(f"{model_dir}: {e}") from e
    model = UNet(**kwargs)
    model.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True)
    return model.eval()


def read_scheduler_config(folder: Path) -> dict[str, Any] | None:
    """The ``DDPMScheduler`` config beside the model: the pipeline's ``scheduler/``, the folder's own, or
    the parent pipeline's (for a ``unet/`` folder); None without one."""
    for candidate in (
        folder / SCHEDULER_DIR / SCHEDULER_CONFIG,
        folder / SCHEDULER_CONFIG,
        folder.parent / SCHEDULER_DIR / SCHEDULER_CONFIG,
    ):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


def _scheduler_betas(config: dict[str, Any], source: str) -> dict[str, Any]:
    """The schedule arguments of :class:`GaussianDiffusion` for a scheduler config: its ``trained_betas``,
    else its named schedule, T and end points."""
    if config.get("trained_betas") is not None:
        return {"betas": torch.tensor(config["trained_betas"], dtype=torch.float64)}
    schedule = config.get("beta_schedule", "linear")
    if schedule not in DIFFUSERS_SCHEDULES:
        raise CheckpointError(
            f"{source}: beta_schedule={schedule!r} is not supported ({', '.join(DIFFUSERS_SCHEDULES)})"
        )
    return {
        "schedule": DIFFUSERS_SCHEDULES[schedule],
        "num_timesteps": int(config.get("num_train_timesteps", 1000)),
        "beta_start": float(config.get("beta_start", 1e-4)),
        "beta_end": float(config.get("beta_end", 0.02)),
    }


def diffusion_from_scheduler(
    config: dict[str, Any] | None, var_type: str, source: str
) -> tuple[GaussianDiffusion, list[str]]:
    """A GaussianDiffusion from a diffusers ``DDPMScheduler`` config.

    :param config: the scheduler config; None: the paper's linear schedule.
    :param var_type: the reverse variance to sample with.
    :param source: where the config came from (for messages).
    :return: the diffusion, and notes on what was assumed or replaced.
    """
    if config is None:
        note = "no scheduler_config.json: using the paper's linear betas 1e-4..0.02, T=1000"
        return paper_diffusion(var_type), [note]
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise CheckpointError(
            f"{source}: prediction_type={prediction!r} is not supported ({', '.join(PREDICTION_TYPES)})"
        )
    schedule = _scheduler_betas(config, source)
    notes: list[str] = []
    scheduler_var = config.get("variance_type")
    if "betas" not in schedule and scheduler_var not in (None, var_type):
        notes.append(
            f"scheduler_config.json says variance_type={scheduler_var!r}; using {var_type!r} (the paper's)"
        )
        log.warning("%s: %s", source, notes[-1])
    diffusion = GaussianDiffusion(
        **schedule,
        mean_type=PREDICTION_TYPES[prediction],  # type: ignore[arg-type]
        var_type=var_type,  # type: ignore[arg-type]
    )
    return diffusion, notes


def _trusted_scheduler_var_type(config: dict[str, Any] | None) -> str | None:
    """The scheduler's variance_type where it is the model's own: written by ``ddpm-export``, or a
    learned range (the network's output has the variance half). Else ``None``: the paper's choice."""
    if config is None:
        return None
    var = config.get("variance_type")
    if var in VAR_TYPES and (EXPORT_MARKER in config or var == "learned_range"):
        return str(var)
    return None


def recorded_class_dropout(config: dict[str, Any] | None, net: UNet) -> float | None:
    """A class-conditional model's training label dropout, from ``ddpm-export``'s record in the scheduler
    config; None where there is none (a folder from elsewhere or an older export: then guidance and the
    null class are refused until the user says ``null_class_trained=true``)."""
    record = (config or {}).get(EXPORT_MARKER)
    if not net.num_classes or not isinstance(record, dict) or record.get("class_dropout") is None:
        return None
    return float(record["class_dropout"])


def load_diffusers_folder(
    path: str | Path, preset: str | None = None, var_type: str | None = None
) -> LoadedModel:
    """A local diffusers ``UNet2DModel`` / ``DDPMPipeline`` folder -> our U-Net + diffusion.

    :param path: the folder.
    :param preset: a released model's name: its architecture is checked and its variance used.
    :param var_type: the reverse variance to sample with (default: the exported run's, else the paper's).
    :raises CheckpointError: one line, for weights that cannot be read or are not the preset's.
    """
    path = Path(path)
    check_var_type(var_type)
    spec = get_preset(preset)
    try:
        net = load_diffusers_unet(path)
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"cannot load diffusers weights from {path}: {str(exc).splitlines()[0][:400]}"
        ) from None
    check_against_preset({key: getattr(net, key) for key in ARCHITECTURE}, spec, preset, path)
    scheduler = read_scheduler_config(path)
    var = var_type or _trusted_scheduler_var_type(scheduler) or paper_var_type(spec, net.resolution)
    diffusion, notes = diffusion_from_scheduler(scheduler, var, str(path))
    class_dropout = recorded_class_dropout(scheduler, net)
    if class_dropout is not None:
        net.class_dropout = class_dropout  # the trained value, not the constructor's default
    return LoadedModel(
        net.eval(),
        diffusion,
        net.image_shape,
        str(path),
        "diffusers",
        weights="released",
        preset=preset,
        notes=notes,
        class_dropout=class_dropout,
    )


__all__ = [
    "DIFFUSERS_SCHEDULES",
    "EXPORT_MARKER",
    "PREDICTION_TYPES",
    "diffusion_from_scheduler",
    "is_diffusers_folder",
    "load_diffusers_folder",
    "load_diffusers_unet",
    "read_scheduler_config",
    "unet_folder",
]
