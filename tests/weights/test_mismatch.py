"""The one state-dict mismatch message every loader gives."""

from __future__ import annotations

import torch

from ddpm.weights.mismatch import state_dict_mismatch


def test_fitting_weights_say_nothing() -> None:
    net = torch.nn.Linear(2, 3)
    assert state_dict_mismatch(net, net.state_dict()) == ""


def test_shapes_then_unexpected_then_missing_five_of_each() -> None:
    net = torch.nn.Sequential(*(torch.nn.Linear(2, 2) for _ in range(4)))
    found = {f"{i}.weight": torch.zeros(3, 2) for i in range(4)} | {f"x{i}": torch.zeros(1) for i in range(7)}
    message = state_dict_mismatch(net, found, names={"0.weight": "first.w"}, unknown=["odd.key"])
    shapes, unexpected, missing = message.split("; ")
    assert shapes.startswith("shape mismatches: ['first.w -> 0.weight: checkpoint (3, 2) vs model (2, 2)', ")
    assert unexpected == "unexpected keys: ['odd.key', 'x0', 'x1', 'x2', 'x3'] (+3 more)"
    assert missing == "missing keys: ['0.bias', '1.bias', '2.bias', '3.bias']"
