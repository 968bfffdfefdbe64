"""The EMA of the weights (decay 0.9999 in the paper), updated without a host-device sync per step."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMA(AveragedModel):
    """torch's :class:`~torch.optim.swa_utils.AveragedModel` with the exponential update, sync-free.

    ``ema <- decay * ema + (1 - decay) * w`` (``torch._foreach_lerp_``), the first update copies ``w``.
    ``AveragedModel.update_parameters`` asks ``n_averaged == 0`` and ``n_averaged > 0`` of a device tensor
    at every step, which on a GPU waits for the step to finish twice. Here a Python flag mirrors
    ``n_averaged > 0``: read from the buffer once, at the first update after construction or loading a
    state dict. The result, the state-dict keys (``module.*``, ``n_averaged``) and checkpoints are
    the same as ``AveragedModel``'s (tests/lightning/test_ema.py).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self._started: bool | None = None

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._started = None  # n_averaged changes: read it again at the next update
        super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s parameters and buffers (a copy at the first step)."""
        if self._started is None:
            self._started = bool(self.n_averaged > 0)
        mine = [*self.module.parameters(), *self.module.buffers()]
        theirs = [p.detach().to(q.device) for p, q in zip([*model.parameters(), *model.buffers()], mine)]
        if not self._started:
            torch._foreach_copy_(mine, theirs)
        else:
            groups: dict[tuple[torch.device, torch.dtype], tuple[list, list]] = {}
            for p_ema, p_model in zip(mine, theirs):
                pair = groups.setdefault((p_ema.device, p_ema.dtype), ([], []))
                pair[0].append(p_ema)
                pair[1].append(p_model)
            for ema_params, model_params in groups.values():
                self.multi_avg_fn(ema_params, model_params, self.n_averaged)
        self.n_averaged += 1
        self._started = True
