"""Weight mapping between diffusers' ``UNet2DModel`` (DDPM configuration) and :class:`ddpm.models.unet.UNet`.

The official DDPM TensorFlow checkpoints were released in diffusers format (``google/ddpm-cifar10-32``,
``google/ddpm-church-256``, ...). This module converts such a local folder (``config.json`` +
``diffusion_pytorch_model.safetensors`` / ``.bin``) into our :class:`UNet`, and maps our weights back to
diffusers' names (:func:`to_diffusers_state_dict`, used by ``ddpm-export``), **without importing diffusers**.

Layout differences handled here:

* names: ``down_blocks.i.resnets.j`` -> ``down.i.block.j``, ``time_emb_proj`` -> ``temb_proj``,
  ``conv_shortcut`` -> ``nin_shortcut``, ``time_embedding.linear_{1,2}`` -> ``temb.dense.{0,1}``,
  ``mid_block.resnets.{0,1}`` / ``attentions.0`` -> ``mid.block_{1,2}`` / ``mid.attn_1``,
  ``conv_norm_out`` -> ``norm_out``;
* attention: diffusers uses ``Linear`` ``to_q/to_k/to_v/to_out.0`` (or the legacy
  ``query/key/value/proj_attn``) and ``group_norm``; ours uses 1x1 convs ``q/k/v/proj_out`` and ``norm``
  (weights reshaped ``[C, C] -> [C, C, 1, 1]``);
* up path: diffusers' ``up_blocks.k`` runs from the lowest resolution, our ``up[i]`` is indexed by level like
  ``down[i]``, so ``up_blocks.k`` -> ``up.(L-1-k)``; ``upsamplers.0.conv`` -> ``upsample.conv``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ddpm.io.checkpoint_file import read_checkpoint
from ddpm.models.unet import UNet

__all__ = [
    "convert_diffusers_state_dict",
    "diffusers_config_for",
    "diffusers_config_of",
    "load_diffusers_unet",
    "to_diffusers_state_dict",
    "unet_kwargs_from_diffusers_config",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")

# UNet2DModel's constructor defaults (diffusers 0.42): a key missing from config.json takes this value.
_DIFFUSERS_DEFAULTS: dict[str, Any] = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (224, 448, 672, 896),
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}

# Settings that must take exactly this value for the model to be the DDPM architecture.
_REQUIRED: dict[str, Any] = {
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "freq_shift": 1,
    "flip_sin_to_cos": False,
    "mid_block_type": "UNetMidBlock2D",
    "mid_block_scale_factor": 1,
    "downsample_padding": 0,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-6,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
}


def diffusers_config_for(
    ch: int = 128,
    ch_mult: Sequence[int] = (1, 2, 2, 2),
    num_res_blocks: int = 2,
    attn_resolutions: Sequence[int] = (16,),
    resolution: int = 32,
    in_channels: int = 3,
    out_channels: int = 3,
    dropout: float = 0.1,
    num_classes: int = 0,
) -> dict[str, Any]:
    """Keyword arguments for diffusers' ``UNet2DModel`` that build exactly ``UNet(**same_args)``.

    The defaults give the CIFAR-10 DDPM config (that of the released ``google/ddpm-cifar10-32``). A
    class-conditional U-Net (``num_classes = K > 0``) is ``num_class_embeds = K + 1`` (the null class is
    the last row), whose ``nn.Embedding`` diffusers adds to the timestep embedding after its MLP, as ours.
    """
    ch_mult = [int(m) for m in ch_mult]
    attn = {int(r) for r in attn_resolutions}
    level_has_attn = [(int(resolution) // 2**i) in attn for i in range(len(ch_mult))]
    return {
        "sample_size": int(resolution),
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "center_input_sample": False,
        "time_embedding_type": "positional",
        "freq_shift": 1,
        "flip_sin_to_cos": False,
        "down_block_types": tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in level_has_attn),
        "mid_block_type": "UNetMidBlock2D",
        "up_block_types": tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(level_has_attn)),
        "block_out_channels": tuple(int(ch) * m for m in ch_mult),
        "layers_per_block": int(num_res_blocks),
        "mid_block_scale_factor": 1,
        "downsample_padding": 0,
        "dropout": float(dropout),
        "act_fn": "silu",
        "attention_head_dim": None,
        "norm_num_groups": 32,
        "norm_eps": 1e-6,
        "resnet_time_scale_shift": "default",
        "add_attention": True,
        **({"num_class_embeds": int(num_classes) + 1} if num_classes else {}),
    }


def diffusers_config_of(net: UNet) -> dict[str, Any]:
    """:func:`diffusers_config_for` with the architecture of an existing ``net``."""
    names = (
        "ch",
        "ch_mult",
        "num_res_blocks",
        "attn_resolutions",
        "resolution",
        "in_channels",
        "out_channels",
    )
    kwargs = {name: getattr(net, name) for name in names}
    return diffusers_config_for(**kwargs, dropout=net.dropout, num_classes=getattr(net, "num_classes", 0))


def _required_problems(cfg: Mapping[str, Any]) -> list[str]:
    """The settings of ``cfg`` that differ from the values the DDPM U-Net needs (``_REQUIRED``)."""
    problems = []
    for key, want in _REQUIRED.items():
        got = cfg[key]
        same = (
            abs(float(got) - want) <= 1e-12 * max(1.0, abs(want))
            if isinstance(want, float) and isinstance(got, int | float)
            else got == want
        )
        if not same:
            problems.append(f"{key}={got!r} (need {want!r})")
    return problems


def _block_problems(cfg: Mapping[str, Any], boc: list[int], down: list[str], up: list[str]) -> list[str]:
    """What in the channel counts, block types and attention settings the DDPM U-Net cannot build."""
    problems = []
    ch = boc[0] if boc else 0
    if not boc or any(c % ch for c in boc):
        problems.append(f"block_out_channels={boc} (need multiples of block_out_channels[0])")
    if cfg["time_embedding_dim"] not in (None, 4 * ch):
        problems.append(f"time_embedding_dim={cfg['time_embedding_dim']!r} (need None or {4 * ch})")
    if cfg["num_class_embeds"] is not None and int(cfg["num_class_embeds"]) < 2:
        problems.append(f"num_class_embeds={cfg['num_class_embeds']!r} (need None or classes + 1 >= 2)")
    if cfg["attn_norm_num_groups"] not in (None, 32):
        problems.append(f"attn_norm_num_groups={cfg['attn_norm_num_groups']!r} (need None or 32)")
    if len(down) != len(boc) or len(up) != len(boc):
        problems.append(
            f"down_block_types/up_block_types must both have len(block_out_channels)={len(boc)} entries"
        )
    bad_types = [t for t in down if t not in ("DownBlock2D", "AttnDownBlock2D")]
    bad_types += [t for t in up if t not in ("UpBlock2D", "AttnUpBlock2D")]
    if bad_types:
        problems.append(
            f"block types {bad_types} (need DownBlock2D/AttnDownBlock2D, UpBlock2D/AttnUpBlock2D)"
        )
    down_attn = [t == "AttnDownBlock2D" for t in down]
    if down_attn != [t == "AttnUpBlock2D" for t in reversed(up)]:
        problems.append(f"down_block_types={down} and up_block_types={up} put attention at different levels")
    head_dim = cfg["attention_head_dim"]
    if head_dim is not None:
        attn_channels = [c for c, a in zip(boc, down_attn) if a] + boc[-1:]  # the mid block always attends
        if any(c != head_dim for c in attn_channels):
            problems.append(
                f"attention_head_dim={head_dim!r} gives multi-head attention "
                "(need None: one head over all channels)"
            )
    return problems


def _sample_size(value: Any) -> tuple[Any, list[str]]:
    """The square ``sample_size`` of a config (an int, or a pair of equal ints) and its problems."""
    problems = []
    if isinstance(value, list | tuple):
        if len(value) != 2 or value[0] != value[1]:
            problems.append(f"sample_size={value!r} (need a square size)")
        value = value[0]
    if value is None:
        problems.append("sample_size=None (needed to place attention; add 'sample_size' to config.json)")
    return value, problems


def unet_kwargs_from_diffusers_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for :class:`UNet` from a diffusers ``UNet2DModel`` ``config.json`` dict.

    Missing keys take diffusers' defaults. Raises ``ValueError`` naming every setting that the DDPM U-Net
    does not support (another time embedding, multi-head attention, a class_embed_type other than None, ...).
    """
    cls = config.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        raise ValueError(f"diffusers config: _class_name={cls!r} is not supported, only 'UNet2DModel'")
    cfg = {**_DIFFUSERS_DEFAULTS, **{k: v for k, v in config.items() if not k.startswith("_")}}
    boc = [int(c) for c in cfg["block_out_channels"]]
    down, up = list(cfg["down_block_types"]), list(cfg["up_block_types"])
    sample_size, size_problems = _sample_size(cfg["sample_size"])
    problems = _required_problems(cfg) + _block_problems(cfg, boc, down, up) + size_problems
    if problems:
        raise ValueError(
            "diffusers UNet2DModel config is not the DDPM U-Net architecture; unsupported setting(s): "
            + "; ".join(problems)
        )
    resolution, ch = int(sample_size), boc[0]
    return {
        "in_channels": int(cfg["in_channels"]),
        "out_channels": int(cfg["out_channels"]),
        "ch": ch,
        "ch_mult": tuple(c // ch for c in boc),
        "num_res_blocks": int(cfg["layers_per_block"]),
        "attn_resolutions": tuple(resolution // 2**i for i, t in enumerate(down) if t == "AttnDownBlock2D"),
        "dropout": float(cfg["dropout"]),
        "resolution": resolution,
        # num_class_embeds = classes + the null class (the last row, as our class_embedding)
        **({"num_classes": int(cfg["num_class_embeds"]) - 1} if cfg["num_class_embeds"] is not None else {}),
    }


_RESNET_RENAMES = {"time_emb_proj": "temb_proj", "conv_shortcut": "nin_shortcut"}
_ATTN_RENAMES = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
    # legacy (diffusers < 0.14) attention names, still found in older hub checkpoints
    "query": "q",
    "key": "k",
    "value": "v",
    "proj_attn": "proj_out",
}


def _rename_attn(rest: str) -> str:
    module, _, param = rest.rpartition(".")
    if module not in _ATTN_RENAMES:
        raise KeyError(rest)
    return f"{_ATTN_RENAMES[module]}.{param}"


def _rename_resnet(rest: str) -> str:
    module, _, param = rest.rpartition(".")
    return f"{_RESNET_RENAMES.get(module, module)}.{param}"


def _map_key(key: str, num_levels: int) -> str | None:
    """Our parameter name for a diffusers key; ``None`` for keys to drop (aliases)."""
    parts = key.split(".")
    head = parts[0]
    if head == "time_embedding" and parts[1] in ("linear_1", "linear_2"):
        return f"temb.dense.{int(parts[1][-1]) - 1}.{parts[2]}"
    if head in ("conv_in", "conv_out", "class_embedding"):
        return key
    if head == "conv_norm_out":
        return f"norm_out.{parts[1]}"
    if head in ("down_blocks", "up_blocks"):
        level = int(parts[1]) if head == "down_blocks" else num_levels - 1 - int(parts[1])
        ours = "down" if head == "down_blocks" else "up"
        kind, rest = parts[2], ".".join(parts[3:])
        if kind == "resnets":
            idx, _, rest = rest.partition(".")
            return f"{ours}.{level}.block.{idx}.{_rename_resnet(rest)}"
        if kind == "attentions":
            idx, _, rest = rest.partition(".")
            return f"{ours}.{level}.attn.{idx}.{_rename_attn(rest)}"
        if kind in ("downsamplers", "upsamplers") and parts[3] == "0":
            sub = parts[4]
            if sub == "Conv2d_0":  # alias of .conv in diffusers' Downsample2D
                return None
            if sub == "conv":
                return (
                    f"{ours}.{level}.{'downsample' if kind == 'downsamplers' else 'upsample'}.conv.{parts[5]}"
                )
    if head == "mid_block":
        kind, idx, rest = parts[1], parts[2], ".".join(parts[3:])
        if kind == "resnets" and idx in ("0", "1"):
            return f"mid.block_{int(idx) + 1}.{_rename_resnet(rest)}"
        if kind == "attentions" and idx == "0":
            return f"mid.attn_1.{_rename_attn(rest)}"
    raise KeyError(key)


def convert_diffusers_state_dict(
    sd: Mapping[str, Tensor], unet_kwargs: Mapping[str, Any]
) -> dict[str, Tensor]:
    """Map a diffusers ``UNet2DModel`` state dict to ours (``UNet(**unet_kwargs)``, ``strict=True``).

    Raises ``ValueError`` listing unknown / missing keys or shape mismatches (diffusers key -> our key).
    """
    with torch.device("meta"):
        expected = {k: v.shape for k, v in UNet(**unet_kwargs).state_dict().items()}
    num_levels = len(tuple(unet_kwargs.get("ch_mult", (1, 2, 2, 2))))

    out: dict[str, Tensor] = {}
    source: dict[str, str] = {}
    unknown: list[str] = []
    shape_errors: list[str] = []
    mismatched: set[str] = set()
    for key, value in sd.items():
        try:
            ours = _map_key(key, num_levels)
        except (KeyError, ValueError, IndexError):
            unknown.append(key)
            continue
        if ours is None:
            continue
        if ours not in expected:
            unknown.append(f"{key} (-> {ours})")
            continue
        shape = expected[ours]
        if value.ndim == 2 and len(shape) == 4 and shape[2:] == (1, 1):  # Linear -> 1x1 conv (attention)
            value = value.reshape(*value.shape, 1, 1)
        if value.shape != shape:
            shape_errors.append(f"{key} -> {ours}: checkpoint {tuple(value.shape)} vs model {tuple(shape)}")
            mismatched.add(ours)
            continue
        if ours in out:
            raise ValueError(f"diffusers state dict: keys {source[ours]!r} and {key!r} both map to {ours!r}")
        out[ours] = value
        source[ours] = key

    missing = sorted(set(expected) - set(out) - mismatched)
    if unknown or missing or shape_errors:
        args = ", ".join(f"{k}={v!r}" for k, v in unet_kwargs.items())
        msg = [f"diffusers state dict does not match UNet({args})"]
        for title, items in [
            ("shape mismatches", shape_errors),
            ("unexpected keys", unknown),
            ("missing keys", missing),
        ]:
            if items:
                more = f" (+{len(items) - 10} more)" if len(items) > 10 else ""
                msg.append(f"{title}: {items[:10]}{more}")
        msg.append("check that config.json belongs to these weights and describes a DDPM UNet2DModel")
        raise ValueError("; ".join(msg))
    return out


# ----------------------------------------------------------------------------- ours -> diffusers
# The inverse renames: the current diffusers names (not the legacy aliases) of our modules.
_RESNET_TO_DIFFUSERS = {ours: theirs for theirs, ours in _RESNET_RENAMES.items()}
_ATTN_TO_DIFFUSERS = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def _diffusers_inner(kind: str, rest: str) -> str:
    """The diffusers name of a parameter inside one of our ResNet (``block``) or attention blocks."""
    module, _, param = rest.rpartition(".")
    renames = _ATTN_TO_DIFFUSERS if kind == "attn" else _RESNET_TO_DIFFUSERS
    if kind == "attn" and module not in renames:
        raise KeyError(rest)
    return f"{renames.get(module, module)}.{param}"


def _diffusers_key(key: str, num_levels: int) -> str:
    """The diffusers ``UNet2DModel`` name of one of our parameter names (the inverse of ``_map_key``)."""
    parts = key.split(".")
    head = parts[0]
    if head == "temb" and parts[1] == "dense":
        return f"time_embedding.linear_{int(parts[2]) + 1}.{parts[3]}"
    if head in ("conv_in", "conv_out", "class_embedding"):
        return key
    if head == "norm_out":
        return f"conv_norm_out.{parts[1]}"
    if head in ("down", "up"):
        level = int(parts[1])
        index = level if head == "down" else num_levels - 1 - level
        prefix = f"{head}_blocks.{index}"
        kind = parts[2]
        if kind in ("block", "attn"):
            group = "resnets" if kind == "block" else "attentions"
            return f"{prefix}.{group}.{parts[3]}.{_diffusers_inner(kind, '.'.join(parts[4:]))}"
        if kind in ("downsample", "upsample") and parts[3] == "conv":
            return f"{prefix}.{kind}rs.0.conv.{parts[4]}"
    if head == "mid":
        rest = ".".join(parts[2:])
        if parts[1] in ("block_1", "block_2"):
            return f"mid_block.resnets.{int(parts[1][-1]) - 1}.{_diffusers_inner('block', rest)}"
        if parts[1] == "attn_1":
            return f"mid_block.attentions.0.{_diffusers_inner('attn', rest)}"
    raise KeyError(key)


def to_diffusers_state_dict(sd: Mapping[str, Tensor], num_levels: int) -> dict[str, Tensor]:
    """Our U-Net's state dict (``len(ch_mult) == num_levels``) under diffusers' ``UNet2DModel`` names.

    The inverse of :func:`convert_diffusers_state_dict`: the attention's 1x1 convs become ``Linear``
    weights (``[C, C, 1, 1] -> [C, C]``). Values are detached, contiguous CPU copies, ready for
    safetensors. Raises ``ValueError`` naming the keys that are not the DDPM U-Net's.
    """
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in sd.items():
        try:
            name = _diffusers_key(key, num_levels)
        except (KeyError, ValueError, IndexError):
            unknown.append(key)
            continue
        value = value.detach().cpu()
        if ".attentions." in name and name.endswith(".weight") and value.ndim == 4:
            value = value.reshape(value.shape[0], value.shape[1])  # 1x1 conv -> Linear
        out[name] = value.contiguous().clone()
    if unknown:
        more = f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""
        raise ValueError(f"not a DDPM U-Net state dict: unknown keys {unknown[:10]}{more}")
    return out


def _resolve_model_dir(folder: Path) -> Path:
    if not folder.is_dir():
        raise FileNotFoundError(
            f"load_diffusers_unet: {folder} is not a directory; pass a local diffusers model folder"
        )
    if not (folder / CONFIG_NAME).is_file() and (folder / "unet" / CONFIG_NAME).is_file():
        return folder / "unet"  # a pipeline folder (model_index.json + unet/ + scheduler/)
    if (folder / CONFIG_NAME).is_file():
        cfg = json.loads((folder / CONFIG_NAME).read_text())
        if (
            "_class_name" in cfg
            and cfg["_class_name"] != "UNet2DModel"
            and (folder / "unet" / CONFIG_NAME).is_file()
        ):
            return folder / "unet"
        return folder
    raise FileNotFoundError(
        f"load_diffusers_unet: no {CONFIG_NAME} in {folder} or {folder / 'unet'}; "
        "pass the folder written by UNet2DModel.save_pretrained (or a pipeline folder with unet/)"
    )


def _load_weights(model_dir: Path) -> dict[str, Tensor]:
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

    Uses ``folder/unet`` for a pipeline folder. Reads ``config.json`` and
    ``diffusion_pytorch_model.safetensors`` (or ``.bin``); weights are loaded in float32 and the model is
    returned in eval mode. Does not need diffusers installed.
    """
    model_dir = _resolve_model_dir(Path(folder))
    config_path = model_dir / CONFIG_NAME
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"load_diffusers_unet: {config_path} is not valid JSON: {e}") from e
    try:
        kwargs = unet_kwargs_from_diffusers_config(config)
    except ValueError as e:
        raise ValueError(f"{config_path}: {e}") from e
    sd = _load_weights(model_dir)
    try:
        converted = convert_diffusers_state_dict(sd, kwargs)
    except ValueError as e:
        raise ValueError(f"{model_dir}: {e}") from e
    model = UNet(**kwargs)
    model.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True)
    return model.eval()
