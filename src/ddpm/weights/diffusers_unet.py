"""diffusers' ``UNet2DModel`` (DDPM configuration) as our :class:`~ddpm.models.UNet`: config, weight names.

Two tables, each read in both directions, and no file (:mod:`ddpm.weights.diffusers_folder` reads the folders,
:mod:`ddpm.weights.export` writes them; diffusers is never imported):

* :data:`UNET2D_SETTINGS`: each ``UNet2DModel`` setting with diffusers' default (which a key missing from a
  ``config.json`` takes) and the value the DDPM U-Net needs, or :data:`ARCH` where it follows the
  architecture. :func:`diffusers_config_of` writes a config from it; :func:`unet_kwargs_from_diffusers_config`
  checks a config against it and reads the architecture back.
* :data:`MODULE_NAMES`: diffusers' module names beside ours, and the modules inside each block.
  :func:`convert_diffusers_state_dict` (diffusers -> ours) and :func:`to_diffusers_state_dict` (ours ->
  diffusers) both derive their renames from it.

Layout differences the tables hold:

* names: ``down_blocks.i.resnets.j`` -> ``down.i.block.j``, ``time_emb_proj`` -> ``temb_proj``,
  ``conv_shortcut`` -> ``nin_shortcut``, ``time_embedding.linear_{1,2}`` -> ``temb.dense.{0,1}``,
  ``mid_block.resnets.{0,1}`` / ``attentions.0`` -> ``mid.block_{1,2}`` / ``mid.attn_1``,
  ``conv_norm_out`` -> ``norm_out``;
* attention: diffusers uses ``Linear`` ``to_q/to_k/to_v/to_out.0`` (or the legacy
  ``query/key/value/proj_attn``, read but never written) and ``group_norm``; ours uses 1x1 convs
  ``q/k/v/proj_out`` and ``norm`` (weights reshaped ``[C, C] <-> [C, C, 1, 1]``);
* up path: diffusers' ``up_blocks.k`` runs from the lowest resolution, our ``up[i]`` is indexed by level like
  ``down[i]``, so ``up_blocks.k`` <-> ``up.(L-1-k)``; ``upsamplers.0.conv`` <-> ``upsample.conv``.
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from ddpm.models.unet import UNet
from ddpm.weights.mismatch import state_dict_mismatch


class _Derived(enum.Enum):
    ARCH = "follows the architecture"


ARCH = _Derived.ARCH

# key: (UNet2DModel's constructor default in diffusers 0.42, the DDPM U-Net's value or ARCH). A fixed value is
# written into every config and required of every config read; the ARCH ones are derived from the network
# (diffusers_config_of) and read or checked by unet_kwargs_from_diffusers_config.
UNET2D_SETTINGS: dict[str, tuple[Any, Any]] = {
    "sample_size": (None, ARCH),
    "in_channels": (3, ARCH),
    "out_channels": (3, ARCH),
    "center_input_sample": (False, False),
    "time_embedding_type": ("positional", "positional"),
    "time_embedding_dim": (None, ARCH),  # None or 4 * ch
    "freq_shift": (0, 1),
    "flip_sin_to_cos": (True, False),
    "down_block_types": (("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"), ARCH),
    "mid_block_type": ("UNetMidBlock2D", "UNetMidBlock2D"),
    "up_block_types": (("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"), ARCH),
    "block_out_channels": ((224, 448, 672, 896), ARCH),
    "layers_per_block": (2, ARCH),
    "mid_block_scale_factor": (1, 1),
    "downsample_padding": (1, 0),
    "downsample_type": ("conv", "conv"),
    "upsample_type": ("conv", "conv"),
    "dropout": (0.0, ARCH),
    "act_fn": ("silu", "silu"),
    "attention_head_dim": (8, ARCH),  # None (one head over all channels), or the attending channels
    "norm_num_groups": (32, 32),
    "attn_norm_num_groups": (None, ARCH),  # None or 32
    "norm_eps": (1e-5, 1e-6),
    "resnet_time_scale_shift": ("default", "default"),
    "add_attention": (True, True),
    "class_embed_type": (None, None),
    "num_class_embeds": (None, ARCH),  # None, or the classes + the null class
}
_DEFAULTS = {key: default for key, (default, _) in UNET2D_SETTINGS.items()}
_FIXED = {key: ddpm for key, (_, ddpm) in UNET2D_SETTINGS.items() if ddpm is not ARCH}


def diffusers_config_of(net: UNet) -> dict[str, Any]:
    """Keyword arguments for diffusers' ``UNet2DModel`` that build exactly ``net``'s architecture.

    A class-conditional U-Net (``num_classes = K > 0``) is ``num_class_embeds = K + 1`` (the null class is
    the last row), whose ``nn.Embedding`` diffusers adds to the timestep embedding after its MLP, as ours.

    :param net: the U-Net.
    :return: the settings in :data:`UNET2D_SETTINGS`' order: its fixed values and those ``net`` gives.
    """
    level_has_attn = [net.resolution // 2**i in net.attn_resolutions for i in range(len(net.ch_mult))]
    num_classes = int(getattr(net, "num_classes", 0))
    derived = {
        "sample_size": net.resolution,
        "in_channels": net.in_channels,
        "out_channels": net.out_channels,
        "down_block_types": tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in level_has_attn),
        "up_block_types": tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(level_has_attn)),
        "block_out_channels": tuple(net.ch * m for m in net.ch_mult),
        "layers_per_block": net.num_res_blocks,
        "dropout": net.dropout,
        "attention_head_dim": None,
        **({"num_class_embeds": num_classes + 1} if num_classes else {}),
    }
    config = {**_FIXED, **derived}
    return {key: config[key] for key in UNET2D_SETTINGS if key in config}


def diffusers_config_for(**unet_kwargs: Any) -> dict[str, Any]:
    """:func:`diffusers_config_of` the ``UNet(**unet_kwargs)``, built on the meta device (no weights).

    :param unet_kwargs: :class:`UNet` arguments; the U-Net's own defaults fill the others, so no argument
        gives the paper's CIFAR-10 model (the config of the released ``google/ddpm-cifar10-32``).
    :return: the ``UNet2DModel`` keyword arguments.
    """
    with torch.device("meta"):
        return diffusers_config_of(UNet(**unet_kwargs))


def _required_problems(cfg: Mapping[str, Any]) -> list[str]:
    """The settings of ``cfg`` that differ from the fixed values of ``UNET2D_SETTINGS``."""
    problems = []
    for key, want in _FIXED.items():
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
    cfg = {**_DEFAULTS, **{k: v for k, v in config.items() if not k.startswith("_")}}
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


# ----------------------------------------------------------------------------- weight names
# The parameter-holding modules inside one block: (diffusers' name, ours).
_RESNET = (
    ("norm1", "norm1"),
    ("conv1", "conv1"),
    ("time_emb_proj", "temb_proj"),
    ("norm2", "norm2"),
    ("conv2", "conv2"),
    ("conv_shortcut", "nin_shortcut"),
)
_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))
_LEAF = (("", ""),)  # the module holds its parameters itself
# attention names of diffusers < 0.14, still found in older hub checkpoints: read, never written
_LEGACY_ATTENTION = (("query", "q"), ("key", "k"), ("value", "v"), ("proj_attn", "proj_out"))

# (diffusers' module, ours, the modules inside it). {level}: a resolution level counted from the highest
# resolution (our down[i] and up[i], diffusers' down_blocks); {rev} = levels - 1 - level (diffusers'
# up_blocks run from the lowest resolution); {n}: a block's index inside its level.
MODULE_NAMES: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("time_embedding.linear_1", "temb.dense.0", _LEAF),
    ("time_embedding.linear_2", "temb.dense.1", _LEAF),
    ("class_embedding", "class_embedding", _LEAF),
    ("conv_in", "conv_in", _LEAF),
    ("down_blocks.{level}.resnets.{n}", "down.{level}.block.{n}", _RESNET),
    ("down_blocks.{level}.attentions.{n}", "down.{level}.attn.{n}", _ATTENTION),
    ("down_blocks.{level}.downsamplers.0.conv", "down.{level}.downsample.conv", _LEAF),
    ("mid_block.resnets.0", "mid.block_1", _RESNET),
    ("mid_block.attentions.0", "mid.attn_1", _ATTENTION),
    ("mid_block.resnets.1", "mid.block_2", _RESNET),
    ("up_blocks.{rev}.resnets.{n}", "up.{level}.block.{n}", _RESNET),
    ("up_blocks.{rev}.attentions.{n}", "up.{level}.attn.{n}", _ATTENTION),
    ("up_blocks.{rev}.upsamplers.0.conv", "up.{level}.upsample.conv", _LEAF),
    ("conv_norm_out", "norm_out", _LEAF),
    ("conv_out", "conv_out", _LEAF),
)
# diffusers modules that hold another one's weights under a second name: dropped when reading
_ALIASES = ("down_blocks.{level}.downsamplers.0.Conv2d_0",)  # Downsample2D's alias of .conv

_Rule = tuple[re.Pattern[str], str | None]  # a parameter name's pattern -> the other side's template


def _pattern(template: str) -> re.Pattern[str]:
    """The parameter names a module template stands for: ``{level}`` etc. numbers, then ``.<param>``."""
    parts = []
    for literal, field, _, _ in string.Formatter().parse(f"{template}.{{param}}"):
        parts.append(re.escape(literal))
        if field:
            parts.append(f"(?P<{field}>[^.]+)" if field == "param" else f"(?P<{field}>\\d+)")
    return re.compile("".join(parts))


def _pairs(legacy: bool) -> Iterator[tuple[str, str]]:
    """(diffusers' name, ours) of every module holding parameters; ``legacy``: also old attention names."""
    for theirs, ours, inside in MODULE_NAMES:
        inner = (*inside, *_LEGACY_ATTENTION) if legacy and inside is _ATTENTION else inside
        for their_part, our_part in inner:
            yield ".".join(filter(None, (theirs, their_part))), ".".join(filter(None, (ours, our_part)))


# diffusers -> ours (the legacy names too, the aliases dropped) and ours -> diffusers: one table, two ways
_READ: list[_Rule] = [(_pattern(t), f"{o}.{{param}}") for t, o in _pairs(legacy=True)]
_READ += [(_pattern(alias), None) for alias in _ALIASES]
_WRITE: list[_Rule] = [(_pattern(o), f"{t}.{{param}}") for t, o in _pairs(legacy=False)]


def _rename(key: str, rules: list[_Rule], num_levels: int) -> str | None:
    """``key`` under the other side's name by the first rule that matches it (None: an alias to drop).

    :raises KeyError: no rule matches: the key is not one of the DDPM U-Net's.
    """
    for pattern, template in rules:
        match = pattern.fullmatch(key)
        if match is None:
            continue
        if template is None:
            return None
        fields: dict[str, Any] = match.groupdict()
        if "level" in fields:
            fields["rev"] = num_levels - 1 - int(fields["level"])
        elif "rev" in fields:
            fields["level"] = num_levels - 1 - int(fields["rev"])
        return template.format(**fields)
    raise KeyError(key)


def _renames(keys: Iterable[str], rules: list[_Rule], num_levels: int) -> tuple[dict[str, str], list[str]]:
    """``({key: its name on the other side}, [keys no rule matches])``; aliases are dropped.

    :param keys: the names of one side (a state dict's keys).
    :param rules: :data:`_READ` (diffusers -> ours) or :data:`_WRITE` (ours -> diffusers).
    :param num_levels: the U-Net's resolution levels, ``len(ch_mult)``.
    """
    renames: dict[str, str] = {}
    unknown: list[str] = []
    for key in keys:
        try:
            name = _rename(key, rules, num_levels)
        except KeyError:
            unknown.append(key)
            continue
        if name is not None:
            renames[key] = name
    return renames, unknown


def _ours(
    sd: Mapping[str, Tensor], expected: Mapping[str, Tensor], num_levels: int
) -> tuple[dict[str, Tensor], dict[str, str], list[str]]:
    """A diffusers state dict under our names: ``(tensors, {our key: diffusers key}, unknown keys)``.

    Attention ``Linear`` weights become the 1x1 convs ``expected`` has.

    :raises ValueError: two diffusers keys map to one of ours.
    """
    out: dict[str, Tensor] = {}
    names: dict[str, str] = {}
    renames, unknown = _renames(sd, _READ, num_levels)
    for key, ours in renames.items():
        value = sd[key]
        if ours in out:
            raise ValueError(f"diffusers state dict: keys {names[ours]!r} and {key!r} both map to {ours!r}")
        shape = expected[ours].shape if ours in expected else None
        if value.ndim == 2 and shape is not None and len(shape) == 4 and shape[2:] == (1, 1):
            value = value.reshape(*value.shape, 1, 1)  # Linear -> 1x1 conv (attention)
        out[ours], names[ours] = value, key
    return out, names, unknown


def convert_diffusers_state_dict(
    sd: Mapping[str, Tensor], unet_kwargs: Mapping[str, Any]
) -> dict[str, Tensor]:
    """Map a diffusers ``UNet2DModel`` state dict to ours (``UNet(**unet_kwargs)``, ``strict=True``).

    :param sd: the diffusers weights.
    :param unet_kwargs: the architecture (:func:`unet_kwargs_from_diffusers_config` of their config).
    :return: the same tensors under our names (attention weights as 1x1 convs).
    :raises ValueError: naming the shape mismatches, unexpected and missing keys (one line, as
        :func:`~ddpm.weights.mismatch.state_dict_mismatch` says them).
    """
    with torch.device("meta"):
        expected = UNet(**unet_kwargs).state_dict()
    num_levels = len(tuple(unet_kwargs.get("ch_mult", (1, 2, 2, 2))))
    out, names, unknown = _ours(sd, expected, num_levels)
    problem = state_dict_mismatch(expected, out, names, unknown)
    if problem:
        args = ", ".join(f"{k}={v!r}" for k, v in unet_kwargs.items())
        raise ValueError(
            f"diffusers state dict does not match UNet({args}); {problem}; "
            "check that config.json belongs to these weights and describes a DDPM UNet2DModel"
        )
    return out


def to_diffusers_state_dict(sd: Mapping[str, Tensor], num_levels: int) -> dict[str, Tensor]:
    """Our U-Net's state dict under diffusers' ``UNet2DModel`` names.

    The inverse of :func:`convert_diffusers_state_dict`: the attention's 1x1 convs become ``Linear``
    weights (``[C, C, 1, 1] -> [C, C]``).

    :param sd: our U-Net's state dict.
    :param num_levels: its resolution levels, ``len(ch_mult)``.
    :return: detached, contiguous CPU copies, ready for safetensors.
    :raises ValueError: naming the keys that are not the DDPM U-Net's.
    """
    renames, unknown = _renames(sd, _WRITE, num_levels)
    if unknown:
        more = f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""
        raise ValueError(f"not a DDPM U-Net state dict: unknown keys {unknown[:10]}{more}")
    out: dict[str, Tensor] = {}
    for key, name in renames.items():
        value = sd[key].detach().cpu()
        if ".attentions." in name and name.endswith(".weight") and value.ndim == 4:
            value = value.reshape(value.shape[0], value.shape[1])  # 1x1 conv -> Linear
        out[name] = value.contiguous().clone()
    return out


__all__ = [
    "ARCH",
    "MODULE_NAMES",
    "UNET2D_SETTINGS",
    "convert_diffusers_state_dict",
    "diffusers_config_for",
    "diffusers_config_of",
    "to_diffusers_state_dict",
    "unet_kwargs_from_diffusers_config",
]
