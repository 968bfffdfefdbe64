"""Export a model as a diffusers ``DDPMPipeline`` folder (``ddpm-export``), without importing diffusers.

The folder holds ``model_index.json``, ``unet/config.json`` + ``unet/diffusion_pytorch_model.safetensors``
(a ``UNet2DModel``, names mapped by :func:`ddpm.weights.diffusers_unet.to_diffusers_state_dict`) and
``scheduler/scheduler_config.json`` (a ``DDPMScheduler`` with the training run's betas, T, variance,
prediction type and clipping), so ``DDPMPipeline.from_pretrained(folder)`` samples the model and
:func:`ddpm.weights.load_model` reads it back bit for bit. A class-conditional model's folder is a
``DDPMConditionalPipeline`` instead (:mod:`ddpm.weights.pipeline_ddpm_conditional`, copied into the folder:
``DDPMPipeline`` passes no labels), loaded with ``DiffusionPipeline.from_pretrained(folder,
trust_remote_code=True)``; ``model_index.json`` says whether its null class was trained, the scheduler's
``_ddpm_export`` record its ``class_dropout``. The folder is built beside the target and
renamed into place: it appears complete or not at all, and an existing non-empty folder is never touched.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.schedules import make_betas
from ddpm.errors import ConfigError, DDPMError
from ddpm.io.atomic import atomic_write, atomic_write_json
from ddpm.models.unet import UNet
from ddpm.weights.diffusers_folder import (
    CONFIG_NAME,
    DIFFUSERS_SCHEDULES,
    EXPORT_MARKER,
    MODEL_INDEX,
    PREDICTION_TYPES,
    SCHEDULER_CONFIG,
    SCHEDULER_DIR,
    UNET_DIR,
    UNET_WEIGHTS,
)
from ddpm.weights.diffusers_unet import diffusers_config_of, to_diffusers_state_dict
from ddpm.weights.load import load_model
from ddpm.weights.loaded import LoadedModel

log = logging.getLogger(__name__)

# written as ``_diffusers_version`` without diffusers installed: the dev extra's floor, the oldest
# diffusers these files target (with it installed, its version: the one the folder was written beside)
DIFFUSERS_VERSION = "0.30.0"
# the pipeline file of a class-conditional folder: this module's source, copied under its own name
CONDITIONAL_PIPELINE = Path(__file__).with_name("pipeline_ddpm_conditional.py")
CONDITIONAL_PIPELINE_CLASS = "DDPMConditionalPipeline"
VARIANCE_TYPES = ("fixed_large", "fixed_small", "learned_range")  # the same names in diffusers
_PREDICTIONS = {ours: theirs for theirs, ours in PREDICTION_TYPES.items()}
_SCHEDULE_NAMES = {ours: theirs for theirs, ours in DIFFUSERS_SCHEDULES.items()}


def exportable_net(loaded: LoadedModel) -> UNet:
    """The loaded DDPM U-Net, or a one-line ConfigError for what diffusers' DDPMScheduler cannot express."""
    diffusion = loaded.diffusion
    if diffusion.mean_type not in _PREDICTIONS:
        raise ConfigError(
            f"{loaded.source}: mean_type={diffusion.mean_type} (the network predicts the posterior mean) has "
            "no diffusers prediction_type: only eps (epsilon) and x0 (sample) models can be exported"
        )
    if diffusion.var_type not in VARIANCE_TYPES:
        raise ConfigError(
            f"{loaded.source}: var_type={diffusion.var_type} (the network outputs log sigma^2) has no "
            f"diffusers variance_type: only {', '.join(VARIANCE_TYPES)} models can be exported"
        )
    if not isinstance(loaded.net, UNet):
        raise ConfigError(
            f"{loaded.source}: the network is a {type(loaded.net).__name__}; only the DDPM U-Net "
            "(ddpm.models.UNet) maps to diffusers' UNet2DModel"
        )
    return loaded.net


def diffusers_version() -> str:
    """The installed diffusers' version (from its metadata: no import), else :data:`DIFFUSERS_VERSION`."""
    try:
        return importlib.metadata.version("diffusers")
    except importlib.metadata.PackageNotFoundError:
        return DIFFUSERS_VERSION


def unet_config(net: UNet) -> dict[str, Any]:
    """``unet/config.json``: the ``UNet2DModel`` config that builds exactly ``net``'s architecture."""
    config = diffusers_config_of(net)
    return {"_class_name": "UNet2DModel", "_diffusers_version": diffusers_version(), **config}


def _endpoint_candidates(betas: torch.Tensor, config: dict[str, Any] | None) -> list[tuple[float, float]]:
    """beta_start/beta_end pairs that may rebuild ``betas``: the run's config, the ends, the paper's."""
    candidates = []
    diffusion_cfg = (config or {}).get("diffusion") or {}
    if "beta_start" in diffusion_cfg and "beta_end" in diffusion_cfg:
        candidates.append((float(diffusion_cfg["beta_start"]), float(diffusion_cfg["beta_end"])))
    return [*candidates, (float(betas[0]), float(betas[-1])), (1e-4, 0.02)]


def beta_fields(diffusion: GaussianDiffusion, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The scheduler's schedule keys: a named schedule where it rebuilds the betas bit for bit, else
    ``trained_betas`` (every beta, as float64 values that JSON keeps exactly)."""
    betas = diffusion.betas.detach().cpu().double()
    name = _SCHEDULE_NAMES.get(diffusion.schedule)
    if name is not None:
        for start, end in _endpoint_candidates(betas, config):
            try:
                rebuilt = make_betas(diffusion.schedule, diffusion.num_timesteps, start, end)
            except DDPMError:
                continue
            if torch.equal(rebuilt, betas):
                return {"beta_schedule": name, "beta_start": start, "beta_end": end, "trained_betas": None}
    return {
        "beta_schedule": "linear",
        "beta_start": float(betas[0]),
        "beta_end": float(betas[-1]),
        "trained_betas": betas.tolist(),
    }


def run_clip_sample(loaded: LoadedModel) -> bool:
    """The training run's ``sampler.clip_denoised`` (clip the predicted x_0 to [-1, 1]); True without one."""
    sampler_cfg = (loaded.config or {}).get("sampler") or {}
    return bool(sampler_cfg.get("clip_denoised", True))


def scheduler_config(loaded: LoadedModel, clip_sample: bool | None = None) -> dict[str, Any]:
    """``scheduler/scheduler_config.json``: a ``DDPMScheduler`` matching the model's diffusion."""
    diffusion = loaded.diffusion
    clip = run_clip_sample(loaded) if clip_sample is None else bool(clip_sample)
    return {
        "_class_name": "DDPMScheduler",
        "_diffusers_version": diffusers_version(),
        "num_train_timesteps": diffusion.num_timesteps,
        **beta_fields(diffusion, loaded.config),
        "variance_type": diffusion.var_type,
        "clip_sample": clip,
        "clip_sample_range": 1.0,
        "prediction_type": _PREDICTIONS[diffusion.mean_type],
        "thresholding": False,
        "timestep_spacing": "leading",
        "steps_offset": 0,
        EXPORT_MARKER: {
            "var_type": diffusion.var_type,
            "mean_type": diffusion.mean_type,
            "weights": loaded.weights,
            "source_kind": loaded.kind,
            **({"class_dropout": loaded.class_dropout} if getattr(loaded.net, "num_classes", 0) else {}),
        },
    }


def model_index(loaded: LoadedModel | None = None) -> dict[str, Any]:
    """``model_index.json``: a ``DDPMPipeline``, or for a class-conditional model the folder's
    ``DDPMConditionalPipeline`` with ``null_class_trained`` (unknown counts as untrained)."""
    components = {"scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"]}
    if loaded is None or not getattr(loaded.net, "num_classes", 0):
        return {"_class_name": "DDPMPipeline", "_diffusers_version": diffusers_version(), **components}
    return {
        "_class_name": [CONDITIONAL_PIPELINE.stem, CONDITIONAL_PIPELINE_CLASS],
        "_diffusers_version": diffusers_version(),
        "null_class_trained": bool(loaded.class_dropout),
        **components,
    }


def check_output_dir(out_dir: str | Path) -> Path:
    """``out_dir`` if it is absent or an empty directory; a one-line ConfigError otherwise (no overwrite)."""
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(
            f"output_dir {out} already exists and is not empty; refusing to overwrite it: "
            "choose a new output_dir"
        )
    return out


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished folder into place (over an empty directory at most)."""
    check_output_dir(out)
    try:
        os.replace(tmp, out)
    except OSError as exc:  # created meanwhile and not empty
        raise ConfigError(
            f"output_dir {out} could not be written ({exc.strerror}); refusing to overwrite it: "
            "choose a new output_dir"
        ) from None


def write_diffusers_folder(loaded: LoadedModel, out_dir: str | Path, clip_sample: bool | None = None) -> Path:
    """Write ``loaded`` as a diffusers DDPMPipeline folder at ``out_dir`` (atomically); returns it."""
    net = exportable_net(loaded)
    out = check_output_dir(out_dir)
    tensors = to_diffusers_state_dict(net.state_dict(), len(net.ch_mult))
    payload = safetensors_bytes(tensors, metadata={"format": "pt"})
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        atomic_write_json(tmp / MODEL_INDEX, model_index(loaded))
        if getattr(net, "num_classes", 0):
            shutil.copyfile(CONDITIONAL_PIPELINE, tmp / CONDITIONAL_PIPELINE.name)
        atomic_write_json(tmp / UNET_DIR / CONFIG_NAME, unet_config(net))
        atomic_write(tmp / UNET_DIR / UNET_WEIGHTS, lambda f: f.write(payload))
        atomic_write_json(tmp / SCHEDULER_DIR / SCHEDULER_CONFIG, scheduler_config(loaded, clip_sample))
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("Wrote the diffusers pipeline folder %s (%s weights)", out, loaded.weights)
    return out


def export_checkpoint(
    source: str | Path,
    out_dir: str | Path,
    *,
    preset: str | None = None,
    use_ema: bool = True,
    clip_sample: bool | None = None,
) -> Path:
    """Any weights :func:`~ddpm.weights.load_model` reads (EMA by default) -> a diffusers folder."""
    check_output_dir(out_dir)  # before reading a large checkpoint
    loaded = load_model(source, preset, use_ema)
    return write_diffusers_folder(loaded, out_dir, clip_sample)


def hub_module() -> ModuleType:
    """``huggingface_hub`` (optional: only ``push_to_hub`` needs it), or a one-line ConfigError."""
    try:
        # imported by name: an optional, network-only extra, not a dependency of the package
        return importlib.import_module("huggingface_hub")
    except ImportError:
        raise ConfigError(
            "push_to_hub needs the huggingface_hub package: pip install huggingface_hub "
            "(or drop push_to_hub and upload the folder yourself)"
        ) from None


def push_to_hub(folder: str | Path, repo_id: str, private: bool = True, hub: ModuleType | None = None) -> str:
    """Upload an exported folder to the Hugging Face Hub model repo ``repo_id`` (network); its URL."""
    hub = hub or hub_module()
    api = hub.HfApi()
    try:
        api.create_repo(repo_id=repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, commit_message="Upload DDPM pipeline (ddpm-export)"
        )
    except Exception as exc:  # network, authentication, permissions: the folder stays on disk
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise DDPMError(
            f"push_to_hub={repo_id} failed ({type(exc).__name__}: {first}); {folder} is written: "
            "log in (huggingface-cli login or HF_TOKEN) and retry"
        ) from None
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}")


__all__ = [
    "check_output_dir",
    "export_checkpoint",
    "hub_module",
    "push_to_hub",
    "scheduler_config",
    "unet_config",
    "write_diffusers_folder",
]
