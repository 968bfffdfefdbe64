"""The (C, H, W) of the images a network takes, from the network or from its config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ddpm.errors import ConfigError


def image_shape_of(
    net: nn.Module, config: Mapping[str, Any] | None = None, override: Sequence[int] | None = None
) -> tuple[int, int, int]:
    """``override`` if given, else the network's ``image_shape`` (our UNet), else its ``in_channels`` and
    ``resolution`` attributes or config entries."""
    if override is not None:
        shape = tuple(int(v) for v in override)
        if len(shape) != 3:
            raise ConfigError(f"an image shape is [C, H, W], got {list(shape)}")
        return shape  # type: ignore[return-value]
    if getattr(net, "image_shape", None) is not None:
        return tuple(int(v) for v in net.image_shape)  # type: ignore[return-value]
    config = config or {}
    channels = getattr(net, "in_channels", None) or config.get("in_channels")
    resolution = getattr(net, "resolution", None) or config.get("resolution")
    if channels is None or resolution is None:
        raise ConfigError("cannot tell the image shape from the network: give it as [C, H, W]")
    return int(channels), int(resolution), int(resolution)


__all__ = ["image_shape_of"]
