"""The DDPM U-Net (Ho, Jain, Abbeel 2020, arXiv:2006.11239, Appendix B), the paper's noise predictor.

A faithful PyTorch port of the official TensorFlow model (``diffusion_tf/models/unet.py``): a PixelCNN++-style
U-Net of wide-ResNet blocks with GroupNorm, a sinusoidal (Transformer) timestep embedding added inside every
ResNet block, single-head self-attention at the 16x16 level, and zero-initialised output layers.

Submodule names follow the official code and pesser's ``pytorch_diffusion`` port (``temb.dense``,
``down[i].block[j]``, ``mid.attn_1``, ``up[i].upsample.conv``, ``norm_out``, ...), so the released pesser
state dicts load with no renaming; :mod:`ddpm.weights.diffusers_unet` maps diffusers' ``UNet2DModel`` weights
(``google/ddpm-*``) onto this layout.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddpm.diffusion.denoiser import NULL_LABEL
from ddpm.errors import ConfigError

__all__ = [
    "AttnBlock",
    "Downsample",
    "ResnetBlock",
    "UNet",
    "Upsample",
    "timestep_embedding",
]

_GROUPS = 32  # GroupNorm groups, as in the official code
_EPS = 1e-6  # GroupNorm epsilon, as in the official code (tf.contrib.layers.group_norm)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal timestep embedding of the official code (``nn.get_timestep_embedding``).

    ``[sin(t * f_i), cos(t * f_i)]`` with ``f_i = exp(-log(max_period) * i / (half - 1))``,
    ``half = dim // 2`` (sin first; an odd ``dim`` is zero-padded). Returns float32 of shape ``[B, dim]``.
    """
    half = dim // 2
    # Same operation order as diffusers' get_timestep_embedding (freq_shift=1) so both agree to the last bit.
    exponent = torch.arange(half, dtype=torch.float32, device=t.device) * (-math.log(max_period))
    freqs = torch.exp(exponent / (half - 1))
    args = t.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


def _normalize(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=_GROUPS, num_channels=channels, eps=_EPS, affine=True)


class ResnetBlock(nn.Module):
    """Wide-ResNet block with the timestep embedding added after the first conv (paper Appendix B).

    ``x -> GN -> SiLU -> conv3x3 -> (+ Linear(SiLU(temb))) -> GN -> SiLU -> Dropout -> conv3x3 (zero init)``,
    plus a 1x1 ``nin_shortcut`` on the skip path when the channel count changes.
    """

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, dropout: float) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm1 = _normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = _normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, x: Tensor, temb_act: Tensor) -> Tensor:
        """``temb_act`` is the already activated embedding ``SiLU(temb)`` of shape ``[B, temb_channels]``
        (computed once per U-Net forward instead of once per block)."""
        h = self.conv1(F.silu(self.norm1(x)))
        # In-place adds are autograd-safe here: conv outputs are not saved for backward.
        h += self.temb_proj(temb_act)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        h += self.nin_shortcut(x) if self.in_channels != self.out_channels else x
        return h


class AttnBlock(nn.Module):
    """Single-head self-attention over all spatial positions with a residual connection.

    ``q, k, v`` and ``proj_out`` are 1x1 convolutions (``nin`` layers of the official code, ``proj_out`` zero
    initialised); ``softmax(q k^T / sqrt(C)) v`` is computed with :func:`F.scaled_dot_product_attention`.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.norm = _normalize(channels)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, hgt, wid = x.shape
        # [B, C, H, W] -> [B, HW, C]: a free view for channels_last inputs, one copy otherwise.
        h = self.norm(x).permute(0, 2, 3, 1).reshape(b, 1, hgt * wid, c)
        # The 1x1 convs as one fused matmul on the token layout (weights [C, C, 1, 1] viewed as [C, C]).
        w = torch.cat([self.q.weight, self.k.weight, self.v.weight]).view(3 * c, c)
        bias = torch.cat([self.q.bias, self.k.bias, self.v.bias])
        q, k, v = F.linear(h, w, bias).chunk(3, dim=-1)
        h = F.scaled_dot_product_attention(q, k, v)  # scale defaults to 1 / sqrt(C)
        h = F.linear(h, self.proj_out.weight.view(c, c), self.proj_out.bias)
        # Back to [B, C, H, W] as a (channels_last-strided) view; the residual add writes x's layout.
        return x + h.view(b, hgt, wid, c).permute(0, 3, 1, 2)


class Downsample(nn.Module):
    """Stride-2 3x3 conv with TensorFlow 'SAME' padding (zero pad right/bottom by one, then padding 0)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _TimestepMLP(nn.Module):
    """Holds ``dense[0]: Linear(ch, 4ch)`` and ``dense[1]: Linear(4ch, 4ch)`` (official naming)."""

    def __init__(self, ch: int, temb_ch: int) -> None:
        super().__init__()
        self.dense = nn.ModuleList([nn.Linear(ch, temb_ch), nn.Linear(temb_ch, temb_ch)])


class _Level(nn.Module):
    """One resolution level: ``block`` / ``attn`` ModuleLists, optionally ``downsample`` / ``upsample``."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Mid(nn.Module):
    def __init__(self, channels: int, temb_ch: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, temb_ch, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, temb_ch, dropout)


def _int_tuple(name: str, value: Sequence[int] | int) -> tuple[int, ...]:
    if isinstance(value, int):
        value = (value,)
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"UNet: {name} must be a sequence of ints, got {value!r}") from None
    if any(v != orig for v, orig in zip(out, value, strict=True)):
        raise ConfigError(f"UNet: {name} must contain integers, got {list(value)!r}")
    return out


def _class_settings(num_classes: int, class_dropout: float) -> tuple[int, float]:
    """Validated ``(num_classes, class_dropout)``."""
    if int(num_classes) != num_classes or num_classes < 0:
        raise ConfigError(f"UNet: num_classes must be 0 (unconditional) or a positive int, got {num_classes}")
    if not 0.0 <= class_dropout < 1.0:
        raise ConfigError(f"UNet: class_dropout must be in [0, 1), got {class_dropout}")
    return int(num_classes), float(class_dropout)


class UNet(nn.Module):
    """The DDPM U-Net ``f_theta(x_t, t)`` (Ho et al. 2020, Appendix B): the paper's eps_theta, or whatever
    the diffusion's ``mean_type`` says it predicts (eps, x_0, mu or v, plus a variance half).

    Defaults are the CIFAR-10 model (35,746,307 parameters). The 256x256 LSUN / CelebA-HQ model is
    ``ch_mult=(1, 1, 2, 2, 4, 4), resolution=256, dropout=0.0`` (113,673,219 parameters).

    Args:
        in_channels: image channels of ``x``.
        out_channels: channels of the prediction: ``in_channels``, twice that for a learned variance.
        ch: base channel count; level ``i`` has ``ch * ch_mult[i]`` channels (must be divisible by 32).
        ch_mult: channel multipliers, one per resolution level (lists from YAML are fine).
        num_res_blocks: ResNet blocks per level on the way down (``num_res_blocks + 1`` on the way up).
        attn_resolutions: feature-map sizes at which a self-attention block follows every ResNet block.
        dropout: dropout rate inside the ResNet blocks.
        resolution: input height = width; must be divisible by ``2 ** (len(ch_mult) - 1)``.
        num_classes: 0 (the paper: unconditional, no class parameters) or the number of classes K of a
            class-conditional model: ``class_embedding = nn.Embedding(K + 1, 4 * ch)`` whose last row is
            the null class, added to the timestep embedding after its MLP (improved/guided-diffusion's
            ``label_emb``, diffusers' ``UNet2DModel(num_class_embeds=K + 1)``).
        class_dropout: in training mode each label is replaced by the null class with this probability
            (drawn from the global RNG), so one network learns p(x|y) and p(x) for classifier-free
            guidance (Ho & Salimans 2022, Algorithm 1). Unused when ``num_classes=0``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        resolution: int = 32,
        num_classes: int = 0,
        class_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        ch_mult = _int_tuple("ch_mult", ch_mult)
        attn_resolutions = _int_tuple("attn_resolutions", attn_resolutions)
        self._validate(
            in_channels=in_channels,
            out_channels=out_channels,
            ch=ch,
            ch_mult=ch_mult,
            num_res_blocks=num_res_blocks,
            attn_resolutions=attn_resolutions,
            dropout=dropout,
            resolution=resolution,
        )

        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.ch = int(ch)
        self.ch_mult = ch_mult
        self.num_res_blocks = int(num_res_blocks)
        self.attn_resolutions = attn_resolutions
        self.dropout = float(dropout)
        self.resolution = int(resolution)
        self.num_resolutions = len(ch_mult)
        self.temb_ch = 4 * self.ch
        self.num_classes, self.class_dropout = _class_settings(num_classes, class_dropout)

        self.temb = _TimestepMLP(self.ch, self.temb_ch)
        if self.num_classes > 0:  # row K is the null class; N(0, 1) init as nn.Embedding (and diffusers)
            self.class_embedding = nn.Embedding(self.num_classes + 1, self.temb_ch)
        self.conv_in = nn.Conv2d(self.in_channels, self.ch, kernel_size=3, stride=1, padding=1)
        self.down = nn.ModuleList([self._down_level(i) for i in range(self.num_resolutions)])
        self.mid = _Mid(self.ch * ch_mult[-1], self.temb_ch, self.dropout)
        # ``up[i]`` is the level at the resolution of ``down[i]``, built from the lowest resolution up.
        built = [self._up_level(i) for i in reversed(range(self.num_resolutions))]
        self.up = nn.ModuleList(built[::-1])
        self.norm_out = _normalize(self.ch * ch_mult[0])
        self.conv_out = nn.Conv2d(self.ch * ch_mult[0], self.out_channels, kernel_size=3, stride=1, padding=1)

        self.reset_parameters()

    def _has_attention(self, i_level: int) -> bool:
        """Whether level ``i_level`` (feature maps ``resolution / 2**i_level``) has self-attention."""
        return self.resolution // 2**i_level in self.attn_resolutions

    def _down_level(self, i_level: int) -> _Level:
        """``num_res_blocks`` ResNet blocks (+ attention), then a downsample except at the last level."""
        level = _Level()
        block_in = self.ch * (1, *self.ch_mult)[i_level]
        block_out = self.ch * self.ch_mult[i_level]
        for _ in range(self.num_res_blocks):
            level.block.append(ResnetBlock(block_in, block_out, self.temb_ch, self.dropout))
            block_in = block_out
            if self._has_attention(i_level):
                level.attn.append(AttnBlock(block_in))
        if i_level != self.num_resolutions - 1:
            level.downsample = Downsample(block_in)
        return level

    def _up_level(self, i_level: int) -> _Level:
        """``num_res_blocks + 1`` ResNet blocks on [h, skip] (+ attention), then an upsample (not at 0)."""
        level = _Level()
        block_in = self.ch * self.ch_mult[min(i_level + 1, self.num_resolutions - 1)]
        block_out = self.ch * self.ch_mult[i_level]
        for i_block in range(self.num_res_blocks + 1):
            # the last block's skip is the level's input (the previous level's output or conv_in's)
            skip_mult = (
                (1, *self.ch_mult)[i_level] if i_block == self.num_res_blocks else self.ch_mult[i_level]
            )
            level.block.append(
                ResnetBlock(block_in + self.ch * skip_mult, block_out, self.temb_ch, self.dropout)
            )
            block_in = block_out
            if self._has_attention(i_level):
                level.attn.append(AttnBlock(block_in))
        if i_level != 0:
            level.upsample = Upsample(block_in)
        return level

    @staticmethod
    def _validate(
        in_channels: int,
        out_channels: int,
        ch: int,
        ch_mult: tuple[int, ...],
        num_res_blocks: int,
        attn_resolutions: tuple[int, ...],
        dropout: float,
        resolution: int,
    ) -> None:
        if in_channels < 1 or out_channels < 1:
            raise ConfigError(
                f"UNet: in_channels and out_channels must be >= 1, got {in_channels} and {out_channels}"
            )
        if ch < _GROUPS or ch % _GROUPS != 0:
            raise ConfigError(
                f"UNet: ch={ch} must be a positive multiple of {_GROUPS} (GroupNorm uses {_GROUPS} groups), "
                f"e.g. {max(_GROUPS, round(ch / _GROUPS) * _GROUPS)}"
            )
        if not ch_mult or any(m < 1 for m in ch_mult):
            raise ConfigError(f"UNet: ch_mult must be a non-empty list of positive ints, got {list(ch_mult)}")
        if num_res_blocks < 1:
            raise ConfigError(f"UNet: num_res_blocks must be >= 1, got {num_res_blocks}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"UNet: dropout must be in [0, 1), got {dropout}")
        factor = 2 ** (len(ch_mult) - 1)
        if resolution < 1 or resolution % factor != 0:
            raise ConfigError(
                f"UNet: resolution={resolution} is not divisible by 2**(len(ch_mult)-1)={factor} "
                f"(ch_mult={list(ch_mult)} downsamples {len(ch_mult) - 1} times); "
                f"use a resolution that is a multiple of {factor} or fewer ch_mult levels"
            )
        level_res = [resolution // 2**i for i in range(len(ch_mult))]
        unknown = [r for r in attn_resolutions if r not in level_res]
        if unknown:  # legal (the official code silently skips them) but almost always a config mistake
            warnings.warn(
                f"UNet: attn_resolutions {list(attn_resolutions)} contains {unknown}, which no level has "
                f"(level resolutions for resolution={resolution}, ch_mult={list(ch_mult)}: {level_res}), "
                "so no attention is added there",
                UserWarning,
                stacklevel=3,
            )

    def reset_parameters(self) -> None:
        """Initialise as the official code: variance scaling (fan_avg, uniform; = Xavier-uniform) for every
        conv / dense weight, zero biases, and zero weights for each ResNet block's ``conv2``, each attention
        ``proj_out`` and ``conv_out`` (so the untrained model outputs exactly 0)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, ResnetBlock):
                nn.init.zeros_(m.conv2.weight)
            elif isinstance(m, AttnBlock):
                nn.init.zeros_(m.proj_out.weight)
        nn.init.zeros_(self.conv_out.weight)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The shape ``(in_channels, resolution, resolution)`` of one input image."""
        return (self.in_channels, self.resolution, self.resolution)

    def _check_inputs(self, x: Tensor, t: Tensor) -> None:
        if x.ndim != 4:
            raise ConfigError(f"UNet expects x of shape [B, C, H, W], got shape {tuple(x.shape)}")
        b, c, hgt, wid = x.shape
        if c != self.in_channels:
            raise ConfigError(
                f"UNet got {c} input channels but was built with in_channels={self.in_channels}"
            )
        if hgt != self.resolution or wid != self.resolution:
            raise ConfigError(
                f"UNet got input size {hgt}x{wid} but was built for resolution={self.resolution} "
                f"({self.resolution}x{self.resolution} images)"
            )
        if t.ndim != 1 or t.shape[0] != b:
            raise ConfigError(
                f"UNet: t must have shape [B]=[{b}] (one timestep per image), got {tuple(t.shape)}"
            )

    def class_indices(self, class_labels: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """Rows of ``class_embedding`` for the labels: ``-1`` (:data:`NULL_LABEL`), ``K`` or ``None`` is the
        null class; in training mode each label becomes the null class with probability ``class_dropout``."""
        null = self.num_classes
        if class_labels is None:
            return torch.full((batch,), null, dtype=torch.long, device=device)
        labels = class_labels.to(device=device, dtype=torch.long)
        if labels.shape != (batch,):
            raise ConfigError(f"UNet: class_labels must have shape [B]=[{batch}], got {tuple(labels.shape)}")
        # always checked on the CPU; on an accelerator not while training (a host sync per step there)
        checked = not self.training or labels.device.type == "cpu"
        if checked and bool(((labels < NULL_LABEL) | (labels > null)).any()):
            raise ConfigError(
                f"UNet: class_labels must be in 0..{null - 1} (or {NULL_LABEL} for the null class), "
                f"got {sorted(set(labels.tolist()))}"
            )
        labels = torch.where(labels == NULL_LABEL, null, labels)
        if self.training and self.class_dropout > 0:
            drop = torch.rand(batch, device=device) < self.class_dropout
            labels = torch.where(drop, null, labels)
        return labels

    def _embed(self, x: Tensor, t: Tensor, class_labels: Tensor | None) -> Tensor:
        """``SiLU(temb)``: the timestep MLP's output plus the class embedding (when conditional)."""
        temb = timestep_embedding(t.to(x.device), self.ch).to(x.dtype)
        temb = self.temb.dense[1](F.silu(self.temb.dense[0](temb)))
        if self.num_classes > 0:
            temb = temb + self.class_embedding(self.class_indices(class_labels, x.shape[0], x.device))
        elif class_labels is not None:
            raise ConfigError(
                "UNet got class_labels but was built unconditional (num_classes=0): set model.num_classes "
                "(and data.class_labels=true) to train a class-conditional model"
            )
        return F.silu(temb)

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """The prediction ``f_theta(x_t, t)`` (``f_theta(x_t, t, y)`` for a conditional model): eps in the
        paper (eq. 11), else the diffusion's ``mean_type`` (x_0, mu or v), with the variance half (the
        second ``in_channels`` outputs) for a learned variance: one network, read by the diffusion.

        Args:
            x: noisy images ``[B, in_channels, resolution, resolution]`` (contiguous or channels_last).
            t: integer timesteps ``[B]`` (a scalar is broadcast to the batch).
            class_labels: int64 ``[B]`` in ``0..num_classes-1``, ``-1`` for the null class; ``None``: all
                null (the unconditional prediction). Only for ``num_classes > 0``.

        Returns:
            ``[B, out_channels, resolution, resolution]``.
        """
        if not torch.is_tensor(t):
            t = torch.tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        self._check_inputs(x, t)

        # Timestep (+ class) embedding; SiLU(temb) is what every ResNet block consumes.
        temb = self._embed(x, t, class_labels)

        # Downsampling.
        hs = [self.conv_in(x)]
        for i_level, level in enumerate(self.down):
            for i_block, block in enumerate(level.block):
                h = block(hs[-1], temb)
                if len(level.attn) > 0:
                    h = level.attn[i_block](h)
                hs.append(h)
            if i_level != self.num_resolutions - 1:
                hs.append(level.downsample(hs[-1]))

        # Middle.
        h = hs[-1]
        h = self.mid.block_1(h, temb)
        h = self.mid.attn_1(h)
        h = self.mid.block_2(h, temb)

        # Upsampling with skip connections.
        for i_level in reversed(range(self.num_resolutions)):
            level = self.up[i_level]
            for i_block, block in enumerate(level.block):
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
                if len(level.attn) > 0:
                    h = level.attn[i_block](h)
            if i_level != 0:
                h = level.upsample(h)

        return self.conv_out(F.silu(self.norm_out(h)))

    def _class_repr(self) -> str:
        if not self.num_classes:
            return ""
        return f", num_classes={self.num_classes}, class_dropout={self.class_dropout}"

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, ch={self.ch}, "
            f"ch_mult={self.ch_mult}, num_res_blocks={self.num_res_blocks}, "
            f"attn_resolutions={self.attn_resolutions}, dropout={self.dropout}, resolution={self.resolution}"
            + self._class_repr()
        )
