"""``torch.compile`` of the per-step network call for sampling: static shapes, CUDA graphs on CUDA.

Sampling calls the same network on the same shapes hundreds of times per batch (1000 times for the
paper's protocol), so a compiled forward pays its compile time once per image shape and batch size.
On CUDA the default mode is ``reduce-overhead``: the call is captured as a CUDA graph and replayed,
which removes the per-kernel launch overhead that dominates small batches. The samplers keep model
outputs across steps (DPM-Solver++'s history), while a CUDA-graph replay overwrites its output
buffers: every call therefore starts a new graph step and returns a copy of its output.

Usage (``ddpm-sample``/``ddpm-eval`` wire it through ``compile: true``)::

    model = compile_for_sampling(module.ema_net.eval())
    images = sample(model, diffusion, shape, num_samples=64, sampler="dpm_solver_pp_2m", steps=20)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def default_mode(net: nn.Module) -> str:
    """``reduce-overhead`` (CUDA graphs) when the network's weights are on CUDA, ``default`` elsewhere."""
    param = next(net.parameters(), None)
    return "reduce-overhead" if param is not None and param.device.type == "cuda" else "default"


class CompiledDenoiser(nn.Module):
    """``net(x_t, t, **cond)`` through a compiled forward; same outputs as ``net`` up to float rounding.

    ``dynamic=False``: every new input shape (e.g. a smaller last batch) compiles its own static
    graph instead of a slower dynamic one. ``net`` is a submodule, so ``eval()``/``to()`` reach it;
    the compiled function holds no weights of its own (it reads ``net``'s at every call).
    """

    def __init__(self, net: nn.Module, mode: str | None = None) -> None:
        super().__init__()
        mode = mode or default_mode(net)
        if mode not in COMPILE_MODES:
            raise ValueError(f"unknown torch.compile mode {mode!r}: use one of {list(COMPILE_MODES)}")
        self.net = net
        self.mode = mode
        self.cudagraphs = mode in ("reduce-overhead", "max-autotune")
        self._forward = torch.compile(net.forward, mode=mode, dynamic=False)

    def forward(self, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        if not self.cudagraphs or x_t.device.type != "cuda":
            return self._forward(x_t, t, **cond)
        torch.compiler.cudagraph_mark_step_begin()
        return self._forward(x_t, t, **cond).clone()


def compile_for_sampling(net: nn.Module, mode: str | None = None) -> CompiledDenoiser:
    """``net``'s per-step call compiled for sampling (see the module docstring); ``mode=None``: by device."""
    return CompiledDenoiser(net, mode)
