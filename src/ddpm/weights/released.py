"""The released DDPM weights (Ho et al. 2020) in our U-Net, with the paper's schedule and variance.

Two local formats are understood (nothing is downloaded):

* a diffusers folder (``google/ddpm-cifar10-32``, ``google/ddpm-church-256``, ...): ``config.json`` +
  ``diffusion_pytorch_model.safetensors``/``.bin``, or a pipeline folder with ``unet/`` and
  ``scheduler/``; converted by :mod:`ddpm.models.diffusers_port`;
* a plain PyTorch state dict from pesser/pytorch_diffusion (``ema_diffusion_cifar10_model/*.ckpt``,
  ...), whose names are our U-Net's; the architecture is read from the tensor shapes and checked
  against the preset.

The reverse variance follows the paper (fixed-large for CIFAR-10, fixed-small for the 256x256
models) unless ``var_type`` is given; the betas come from the diffusers scheduler config when there
is one, else the paper's linear 1e-4..0.02 over T=1000.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ddpm.diffusion.gaussian import VAR_TYPES, GaussianDiffusion
from ddpm.errors import CheckpointError, ConfigError
from ddpm.io.checkpoint_file import read_checkpoint
from ddpm.models import UNet, load_diffusers_unet

log = logging.getLogger(__name__)

_CIFAR_UNET = {
    "ch": 128,
    "ch_mult": (1, 2, 2, 2),
    "num_res_blocks": 2,
    "attn_resolutions": (16,),
    "resolution": 32,
}
_LSUN_UNET = {
    "ch": 128,
    "ch_mult": (1, 1, 2, 2, 4, 4),
    "num_res_blocks": 2,
    "attn_resolutions": (16,),
    "resolution": 256,
}


@dataclass(frozen=True)
class Preset:
    """A released model: architecture, sampling variance and dataset config (its published numbers are
    :data:`ddpm.evaluation.paper_numbers.PAPER` under the dataset's family)."""

    unet: dict[str, Any]
    var_type: str
    dropout: float
    data: str
    diffusers_id: str
    pesser_name: str


PRESETS: dict[str, Preset] = {
    "cifar10": Preset(
        unet=_CIFAR_UNET,
        var_type="fixed_large",
        dropout=0.1,
        data="cifar10",
        diffusers_id="google/ddpm-cifar10-32",
        pesser_name="ema_diffusion_cifar10_model",
    ),
    "lsun_church": Preset(
        unet=_LSUN_UNET,
        var_type="fixed_small",
        dropout=0.0,
        data="lsun_church",
        diffusers_id="google/ddpm-church-256",
        pesser_name="ema_diffusion_lsun_church_model",
    ),
    "lsun_bedroom": Preset(
        unet=_LSUN_UNET,
        var_type="fixed_small",
        dropout=0.0,
        data="lsun_bedroom",
        diffusers_id="google/ddpm-bedroom-256",
        pesser_name="ema_diffusion_lsun_bedroom_model",
    ),
    "lsun_cat": Preset(
        unet=_LSUN_UNET,
        var_type="fixed_small",
        dropout=0.0,
        data="lsun_cat",
        diffusers_id="google/ddpm-cat-256",
        pesser_name="ema_diffusion_lsun_cat_model",
    ),
    "celeba_hq": Preset(
        unet=_LSUN_UNET,
        var_type="fixed_small",
        dropout=0.0,
        data="image_folder",
        diffusers_id="google/ddpm-celebahq-256",
        pesser_name="ema_diffusion_celeba_hq_model",
    ),
}

# diffusers' names -> ours (``ddpm.weights.export`` writes the inverse)
DIFFUSERS_SCHEDULES = {"linear": "linear", "scaled_linear": "quadratic", "squaredcos_cap_v2": "cosine"}
PREDICTION_TYPES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
# the key ``ddpm-export`` adds to scheduler_config.json (diffusers drops keys starting with "_"): its
# variance_type is then the training run's, not a default to be replaced by the paper's choice
EXPORT_MARKER = "_ddpm_export"


@dataclass
class LoadedModel:
    """A network ready to sample (eval mode), its diffusion, and where it came from."""

    net: torch.nn.Module
    diffusion: GaussianDiffusion
    image_shape: tuple[int, int, int]
    source: str
    kind: str  # "lightning", "diffusers" or "pesser"
    weights: str  # "ema", "raw" or "released"
    preset: str | None = None
    config: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def get_preset(name: str | None) -> Preset | None:
    if name is None:
        return None
    if name not in PRESETS:
        raise ConfigError(f"unknown pretrained preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def _paper_var_type(preset: Preset | None, resolution: int) -> str:
    if preset is not None:
        return preset.var_type
    return "fixed_large" if resolution <= 32 else "fixed_small"


def _check_var_type(var_type: str | None) -> None:
    if var_type is not None and var_type not in VAR_TYPES:
        raise ConfigError(f"unknown var_type {var_type!r}: choose one of {', '.join(VAR_TYPES)}")


def _norm(value: Any) -> Any:
    return tuple(int(v) for v in value) if isinstance(value, list | tuple) else value


def _check_against_preset(
    kwargs: dict[str, Any], preset: Preset | None, name: str | None, source: Path
) -> None:
    if preset is None:
        return
    mismatches = [
        f"{key}={_norm(kwargs[key])} (preset {name} expects {_norm(value)})"
        for key, value in preset.unet.items()
        if _norm(kwargs[key]) != _norm(value)
    ]
    if mismatches:
        raise CheckpointError(
            f"{source} is not the {name} model: {'; '.join(mismatches)}; "
            f"pass the matching pretrained=<preset> ({', '.join(PRESETS)}) or the right weights"
        )


# ----------------------------------------------------------------------------- pesser state dicts
def infer_unet_kwargs(state_dict: dict[str, Tensor], resolution: int) -> dict[str, Any]:
    """UNet constructor arguments from the tensor shapes of a pesser / our-layout state dict."""
    try:
        ch, in_channels = state_dict["conv_in.weight"].shape[:2]
        out_channels = state_dict["conv_out.weight"].shape[0]
        levels = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"down\.(\d+)\.", k))})
        ch_mult = tuple(int(state_dict[f"down.{i}.block.0.conv1.weight"].shape[0]) // int(ch) for i in levels)
        blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"down\.0\.block\.(\d+)\.", k))}
        attn_levels = sorted(
            {int(m.group(1)) for k in state_dict if (m := re.match(r"down\.(\d+)\.attn\.", k))}
        )
    except (KeyError, IndexError) as exc:
        raise CheckpointError(
            f"not a DDPM U-Net state dict (missing {exc}); expected pesser/pytorch_diffusion names "
            "(conv_in, down.0.block.0..., mid.attn_1, up..., norm_out, conv_out)"
        ) from None
    return {
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "ch": int(ch),
        "ch_mult": ch_mult,
        "num_res_blocks": len(blocks),
        "attn_resolutions": tuple(resolution // 2**i for i in attn_levels),
        "resolution": int(resolution),
    }


def state_dict_mismatch(model: torch.nn.Module, state_dict: dict[str, Tensor]) -> str:
    """'' if ``state_dict`` fits ``model`` exactly; else the missing / unexpected / mis-shaped keys."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [
        f"{k}: file {tuple(v.shape)} vs model {expected[k]}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != expected[k]
    ]
    parts = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if items:
            parts.append(f"{label}: {items[:5]}" + (f" (+{len(items) - 5} more)" if len(items) > 5 else ""))
    return "; ".join(parts)


def _unwrap_state_dict(obj: Any) -> dict[str, Tensor]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError("the file is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_pesser_state_dict(
    path: str | Path,
    preset: str | None = None,
    resolution: int | None = None,
    var_type: str | None = None,
    state_dict: Any = None,
) -> LoadedModel:
    """A pesser/pytorch_diffusion ``.ckpt`` (plain state dict) -> our UNet + the paper's diffusion.

    ``state_dict``: the file's already loaded contents (to avoid reading a large file twice)."""
    path = Path(path)
    _check_var_type(var_type)
    spec = get_preset(preset)
    if resolution is None:
        if spec is None:
            raise ConfigError(
                f"{path} is a plain state dict: pass pretrained=<preset> ({', '.join(PRESETS)}) so that the "
                "resolution and the reverse variance are known"
            )
        resolution = int(spec.unet["resolution"])
    if state_dict is None:
        state_dict = read_checkpoint(path)
    try:
        state_dict = _unwrap_state_dict(state_dict)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    kwargs = infer_unet_kwargs(state_dict, resolution)
    _check_against_preset(kwargs, spec, preset, path)
    try:
        net = UNet(**kwargs, dropout=spec.dropout if spec else 0.0)
    except ValueError as exc:
        raise CheckpointError(f"{path}: the weights describe no valid DDPM U-Net ({exc})") from None
    problem = state_dict_mismatch(net, state_dict)
    if problem:
        raise CheckpointError(f"{path} does not fit UNet({kwargs}): {problem}")
    net.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
    notes = []
    if "ema" not in path.as_posix().lower():
        notes.append("the file name does not say 'ema': the paper's numbers need the EMA weights")
        log.warning("%s: %s", path, notes[-1])
    var = var_type or _paper_var_type(spec, resolution)
    diffusion = GaussianDiffusion("linear", 1000, 1e-4, 0.02, mean_type="eps", var_type=var)  # type: ignore[arg-type]
    shape = (kwargs["in_channels"], resolution, resolution)
    return LoadedModel(
        net.eval(), diffusion, shape, str(path), "pesser", weights="released", preset=preset, notes=notes
    )


# ----------------------------------------------------------------------------- diffusers folders
def _scheduler_config(folder: Path) -> dict[str, Any] | None:
    for candidate in (
        folder / "scheduler" / "scheduler_config.json",
        folder / "scheduler_config.json",
        folder.parent / "scheduler" / "scheduler_config.json",
    ):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


def diffusion_from_scheduler(
    config: dict[str, Any] | None, var_type: str, source: str
) -> tuple[GaussianDiffusion, list[str]]:
    """A GaussianDiffusion from a diffusers DDPMScheduler config (the paper's linear schedule without one)."""
    notes: list[str] = []
    if config is None:
        notes.append("no scheduler_config.json: using the paper's linear betas 1e-4..0.02, T=1000")
        return GaussianDiffusion("linear", 1000, 1e-4, 0.02, mean_type="eps", var_type=var_type), notes  # type: ignore[arg-type]
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise CheckpointError(
            f"{source}: prediction_type={prediction!r} is not supported ({', '.join(PREDICTION_TYPES)})"
        )
    mean_type = PREDICTION_TYPES[prediction]
    if config.get("trained_betas") is not None:
        betas = torch.tensor(config["trained_betas"], dtype=torch.float64)
        return GaussianDiffusion(mean_type=mean_type, var_type=var_type, betas=betas), notes  # type: ignore[arg-type]
    schedule = config.get("beta_schedule", "linear")
    if schedule not in DIFFUSERS_SCHEDULES:
        raise CheckpointError(
            f"{source}: beta_schedule={schedule!r} is not supported ({', '.join(DIFFUSERS_SCHEDULES)})"
        )
    scheduler_var = config.get("variance_type")
    if scheduler_var not in (None, var_type):
        notes.append(
            f"scheduler_config.json says variance_type={scheduler_var!r}; using {var_type!r} (the paper's)"
        )
        log.warning("%s: %s", source, notes[-1])
    diffusion = GaussianDiffusion(
        DIFFUSERS_SCHEDULES[schedule],
        int(config.get("num_train_timesteps", 1000)),
        float(config.get("beta_start", 1e-4)),
        float(config.get("beta_end", 0.02)),
        mean_type=mean_type,  # type: ignore[arg-type]
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


def load_diffusers_folder(
    path: str | Path, preset: str | None = None, var_type: str | None = None
) -> LoadedModel:
    """A local diffusers UNet2DModel / DDPMPipeline folder -> our UNet + diffusion."""
    path = Path(path)
    _check_var_type(var_type)
    spec = get_preset(preset)
    try:
        net = load_diffusers_unet(path)
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"cannot load diffusers weights from {path}: {str(exc).splitlines()[0][:400]}"
        ) from None
    kwargs = {
        "ch": net.ch,
        "ch_mult": net.ch_mult,
        "num_res_blocks": net.num_res_blocks,
        "attn_resolutions": net.attn_resolutions,
        "resolution": net.resolution,
    }
    _check_against_preset(kwargs, spec, preset, path)
    scheduler = _scheduler_config(path)
    var = var_type or _trusted_scheduler_var_type(scheduler) or _paper_var_type(spec, net.resolution)
    diffusion, notes = diffusion_from_scheduler(scheduler, var, str(path))
    shape = (net.in_channels, net.resolution, net.resolution)
    return LoadedModel(
        net.eval(), diffusion, shape, str(path), "diffusers", weights="released", preset=preset, notes=notes
    )


def is_diffusers_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and ((path / "config.json").is_file() or (path / "unet" / "config.json").is_file())
