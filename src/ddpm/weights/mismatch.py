"""The one message for weights that do not fit a network: their shape mismatches, unexpected and missing keys.

Every loader says it the same way: our checkpoints copied into a run (``init_from=``), pesser state dicts and
diffusers folders (whose keys are shown as ``their name -> ours``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

SHOWN = 5  # entries named per kind; the rest are counted


def shapes_of(weights: torch.nn.Module | Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a network's state dict or of a state dict."""
    state = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
    return {key: tuple(value.shape) for key, value in state.items()}


def _listed(label: str, items: list[str]) -> str:
    """``label: [the first SHOWN items] (+N more)``."""
    more = f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return f"{label}: {items[:SHOWN]}{more}"


def state_dict_mismatch(
    expected: torch.nn.Module | Mapping[str, Tensor],
    found: Mapping[str, Tensor],
    names: Mapping[str, str] | None = None,
    unknown: Sequence[str] = (),
) -> str:
    """Why ``found`` does not load into ``expected`` with ``strict=True``; ``''`` when it does.

    :param expected: the network (or its state dict) the weights are meant for.
    :param found: the weights, under the network's key names.
    :param names: for weights renamed from another layout, the file's name of each key of ``found``: an
        entry is then shown as ``file name -> our name``.
    :param unknown: file keys that have no name in the network (shown as unexpected).
    :return: one line: the shape mismatches, the unexpected keys, then the missing keys (``SHOWN`` of each).
    """
    want, have = shapes_of(expected), shapes_of(found)

    def shown(key: str) -> str:
        return f"{names[key]} -> {key}" if names and key in names else key

    shapes = [
        f"{shown(key)}: checkpoint {shape} vs model {want[key]}"
        for key, shape in have.items()
        if key in want and shape != want[key]
    ]
    unexpected = sorted([*unknown, *(shown(key) for key in have if key not in want)])
    missing = sorted(set(want) - set(have))
    kinds = (("shape mismatches", shapes), ("unexpected keys", unexpected), ("missing keys", missing))
    return "; ".join(_listed(label, items) for label, items in kinds if items)


__all__ = ["shapes_of", "state_dict_mismatch"]
