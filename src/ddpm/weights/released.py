"""The released DDPM weights as pesser state dicts: read into our U-Net with the paper's diffusion.

pesser/pytorch_diffusion released the paper's EMA weights as plain PyTorch state dicts
(``ema_diffusion_cifar10_model/*.ckpt``, ...) whose names are our U-Net's: the architecture is read from the
tensor shapes and checked against the preset (:mod:`ddpm.weights.presets`); the diffusion is the paper's, with
its reverse variance (fixed-large for CIFAR-10, fixed-small for the 256x256 models) unless ``var_type`` is
given. The other formats: :mod:`ddpm.weights.diffusers_folder` (diffusers folders), :mod:`ddpm.weights.load`
(our checkpoints, and the choice among the three). Nothing is downloaded.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from torch import Tensor

from ddpm.errors import CheckpointError, ConfigError
from ddpm.io.checkpoint_file import read_checkpoint
from ddpm.models.unet import UNet
from ddpm.weights.loaded import LoadedModel, check_var_type
from ddpm.weights.mismatch import state_dict_mismatch
from ddpm.weights.presets import PRESETS, check_against_preset, get_preset, paper_diffusion, paper_var_type

log = logging.getLogger(__name__)


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


def _unwrap_state_dict(obj: Any) -> dict[str, Tensor]:
    """The tensors of a state dict file (inside a ``state_dict`` key, without DDP's ``module.`` prefix)."""
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
    check_var_type(var_type)
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
    check_against_preset(kwargs, spec, preset, path)
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
    diffusion = paper_diffusion(var_type or paper_var_type(spec, resolution))
    shape = (kwargs["in_channels"], resolution, resolution)
    return LoadedModel(
        net.eval(), diffusion, shape, str(path), "pesser", weights="released", preset=preset, notes=notes
    )


__all__ = ["infer_unet_kwargs", "load_pesser_state_dict"]
