"""The LightningModule: L_simple training of a network under a GaussianDiffusion, with an EMA copy."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from ddpm.diffusion.denoiser import Batch, Cond, split_batch
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.losses import SimpleLoss
from ddpm.errors import ConfigError
from ddpm.io.checkpoint_file import CLASS_DROPOUT_KEY
from ddpm.lightning.ema import EMA
from ddpm.utils.rng import derive_seed, make_generator

OptimizerFactory = Callable[..., torch.optim.Optimizer]


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The official LR schedule: lr * min(step / warmup_steps, 1) (linear warm-up, then constant)."""
    return 1.0 if warmup_steps <= 0 else min(step / warmup_steps, 1.0)


def resolve_fused(factory: OptimizerFactory, device: torch.device, grad_scaler: bool) -> OptimizerFactory:
    """``fused=None`` in a partial optimizer config is auto: fused on CUDA, torch's default elsewhere.

    torch's default is foreach on CUDA and the per-tensor loop on the CPU (numbers unchanged there).
    The fused step unscales fp16 gradients itself, after our clipping, so with a gradient scaler
    (``16-mixed``) auto means not fused and an explicit ``fused=true`` is refused.
    """
    keywords = getattr(factory, "keywords", None)
    if not isinstance(factory, functools.partial) or not keywords or "fused" not in keywords:
        return factory
    fused = keywords["fused"]
    if fused and grad_scaler:
        raise ConfigError(
            "module.optimizer.fused=true cannot be used with trainer.precision=16-mixed (the fused step "
            "unscales after gradient clipping): use bf16-mixed, or module.optimizer.fused=null"
        )
    if fused is None:
        fused = device.type == "cuda" and not grad_scaler
    return functools.partial(factory, fused=fused or None)


class DDPMLitModule(L.LightningModule):
    """Trains ``net`` to predict the diffusion's target (eps in the paper) and keeps an EMA copy.

    Args:
        net: the denoiser, called as ``net(x_t, t, **cond)`` (:mod:`ddpm.diffusion.denoiser`).
        diffusion: the forward process and parameterisation.
        optimizer: a factory ``optimizer(params) -> Optimizer`` (Hydra ``_partial_``);
            Adam(lr=2e-4) by default.
        loss: a loss module called as ``loss(net, diffusion, x0, generator, cond=cond)`` returning
            per-example losses.
        warmup_steps: linear LR warm-up length (5000 in the paper).
        ema_decay: EMA decay (0.9999 in the paper). The first update copies the weights.
        seed: base seed; the noise, timesteps and dropout of step s on rank r are a function of
            (seed, s, micro-batch, r), so a resumed run repeats an uninterrupted one exactly.
        channels_last: keep the network and its inputs in channels-last memory format (faster
            convolutions with cuDNN on tensor-core GPUs, especially under bf16-mixed).
        compile: ``torch.compile`` the network's forward (``nn.Module.compile``: compiled in place,
            so the state-dict keys and checkpoints are those of an eager run). The EMA copy, the
            loss, the optimizer and Lightning's loop stay eager.

    Nothing in a training step waits for the device: the loss and gradient norm are logged as
    tensors (not in the progress bar, which would call ``.item()`` every step: a progress-bar
    callback reads them at its own refresh interval), and the EMA update is sync-free
    (:class:`~ddpm.lightning.ema.EMA`).

    The EMA is torch's :class:`~torch.optim.swa_utils.AveragedModel` with the fused multi-tensor EMA
    update (:class:`~ddpm.lightning.ema.EMA`). Lightning's ``WeightAveraging`` callback would also do,
    but it averages a deep copy of the whole LightningModule, swaps the averaged weights into the live
    model for validation and stores them as the checkpoint's ``state_dict``; an explicit ``ema``
    submodule keeps the raw and the averaged U-Net side by side (``net.*`` and ``ema.module.*`` in
    every checkpoint) so sampling code never has to know which weights are live.
    """

    def __init__(
        self,
        net: nn.Module,
        diffusion: GaussianDiffusion,
        optimizer: OptimizerFactory | None = None,
        loss: nn.Module | None = None,
        warmup_steps: int = 5000,
        ema_decay: float = 0.9999,
        seed: int = 0,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["net", "diffusion", "loss", "optimizer"])
        self.net = net
        self.diffusion = diffusion
        self.loss_fn = loss if loss is not None else SimpleLoss()
        self.optimizer_factory = optimizer
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        net.to(memory_format=self.memory_format)
        self.ema = EMA(net, ema_decay)
        self.last_grad_norm: Tensor | None = None  # the pre-clipping gradient norm of the latest step
        self.ema.requires_grad_(False)
        if compile:
            net.compile()  # after the EMA's deep copy: the EMA network stays eager

    # ------------------------------------------------------------------ models
    @property
    def ema_net(self) -> nn.Module:
        """The EMA weights as a plain module; use it for all sampling and evaluation."""
        return self.ema.module

    def forward(self, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        return self.net(x_t, t, **cond)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A class-conditional network's label dropout, recorded: whether its null class was trained."""
        if getattr(self.net, "num_classes", 0):
            checkpoint[CLASS_DROPOUT_KEY] = float(self.net.class_dropout)

    # ------------------------------------------------------------------ training
    def _micro_batch(self, batch_idx: int) -> int:
        """Index of this batch within its gradient-accumulation window (0 without accumulation)."""
        accumulate = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        return batch_idx % accumulate

    def _generator(self, *counters: int | str) -> torch.Generator:
        """A generator on this module's device seeded from (seed, *counters, rank)."""
        return make_generator(derive_seed(self.hparams.seed, *counters, self.global_rank), self.device)

    def _loss(self, net: nn.Module, x0: Tensor, cond: Cond, generator: torch.Generator) -> Tensor:
        """Mean loss of ``net`` on x0 (with its conditioning), laid out in the module's memory format."""
        x0 = x0.contiguous(memory_format=self.memory_format)
        return self.loss_fn(net, self.diffusion, x0, generator, cond=cond).mean()

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """L_simple (or the configured loss) of one batch (Algorithm 1); see :func:`split_batch`."""
        # Randomness keyed by (optimizer step, micro-batch, rank), not by the epoch's batch index,
        # which Lightning does not always restore exactly.
        step, micro = self.global_step, self._micro_batch(batch_idx)
        generator = self._generator("train", step, micro)
        # Dropout draws from the global RNG: reseed it from the same counters.
        torch.manual_seed(derive_seed(self.hparams.seed, "dropout", step, micro, self.global_rank))
        x0, cond = split_batch(batch)
        loss = self._loss(self.net, x0, cond, generator)
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.ema.update_parameters(self.net)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip by global norm (1.0 in the paper) and log the pre-clipping norm, computed once."""
        if gradient_clip_algorithm not in (None, "norm"):
            raise ValueError(f"only norm clipping is supported, got {gradient_clip_algorithm!r}")
        params = [p for p in self.net.parameters() if p.grad is not None]
        if gradient_clip_val:
            norm = torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        self.last_grad_norm = norm.detach()  # read by the divergence guard (no host sync here)
        self.log("train/grad_norm", norm, on_step=True, on_epoch=False)

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """L_simple of the raw and EMA weights on held-out data, with fixed t and noise per batch."""
        x0, cond = split_batch(batch)
        for name, net in (("val/loss", self.net), ("val/loss_ema", self.ema_net)):
            loss = self._loss(net, x0, cond, self._generator("val", batch_idx))
            self.log(name, loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=x0.shape[0])

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        factory = self.optimizer_factory or (lambda params: torch.optim.Adam(params, lr=2e-4))
        plugin = self.trainer.precision_plugin if self._trainer is not None else None
        scaler = getattr(plugin, "scaler", None) is not None
        optimizer = resolve_fused(factory, self.device, scaler)(params=self.net.parameters())
        warmup = int(self.hparams.warmup_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_factor(step, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
