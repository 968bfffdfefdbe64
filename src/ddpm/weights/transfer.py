"""Start a training run from existing weights (fine-tuning): ``ddpm-train init_from=...``.

Unlike a resume (``ckpt_path``), only the network's weights are taken: the optimizer, the step counter
and the learning-rate warm-up start afresh.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ddpm.errors import CheckpointError, ConfigError
from ddpm.weights.load import load_model
from ddpm.weights.loaded import LoadedModel
from ddpm.weights.mismatch import state_dict_mismatch

log = logging.getLogger(__name__)


def copy_weights(module: Any, net: torch.nn.Module, source: str = "the weights") -> None:
    """Copy ``net``'s state into ``module.net`` and its EMA copy ``module.ema_net``; shapes must match."""
    state = net.state_dict()
    for target in (module.net, module.ema_net):
        problem = state_dict_mismatch(target, state)
        if problem:
            raise CheckpointError(
                f"init_from={source} does not fit the model being trained: {problem}; "
                "pick weights of the same architecture (model=...) or drop init_from"
            )
    with torch.no_grad():
        for target in (module.net, module.ema_net):
            target.load_state_dict(state, strict=True)


def _warn_on_other_diffusion(module: Any, loaded: LoadedModel) -> None:
    """Fine-tuning onto another forward process is allowed, but rarely intended: say so."""
    ours, theirs = module.diffusion, loaded.diffusion
    fields = ("num_timesteps", "mean_type", "var_type")
    differ = [
        f"{f}: {getattr(theirs, f)} -> {getattr(ours, f)}"
        for f in fields
        if getattr(ours, f) != getattr(theirs, f)
    ]
    if ours.num_timesteps == theirs.num_timesteps and not torch.equal(
        ours.betas.cpu(), theirs.betas.detach().cpu()
    ):
        differ.append("betas")
    if differ:
        log.warning("init_from=%s was trained with another diffusion (%s)", loaded.source, "; ".join(differ))


def init_from_weights(
    module: Any, source: str | Path, preset: str | None = None, use_ema: bool = True
) -> LoadedModel:
    """Load any weights :func:`~ddpm.weights.load_model` reads (EMA of our checkpoints by default)
    and copy them into ``module.net`` and its EMA; returns what was loaded."""
    try:
        loaded = load_model(source, preset, use_ema)
    except ConfigError as exc:  # the loader's hints name pretrained=, ddpm-train's key is init_pretrained=
        raise ConfigError(f"init_from={source}: {exc} (ddpm-train: init_pretrained=<preset>)") from None
    copy_weights(module, loaded.net, str(source))
    _warn_on_other_diffusion(module, loaded)
    log.info("Initialised the network and its EMA from %s (%s weights)", loaded.source, loaded.weights)
    return loaded


__all__ = ["copy_weights", "init_from_weights"]
