"""GPU fast paths of the LightningModule, proven on the CPU: sync-free EMA and training step, fused Adam
by device, compile flag with eager-compatible checkpoints, bf16-mixed close to fp32 with fp32 weights."""

import functools

import lightning as L
import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.lightning import DDPMLitModule
from ddpm.lightning.ema import EMA
from ddpm.lightning.module import resolve_fused
from tests.helpers import tiny_unet

ONE_LEVEL = {"ch_mult": (1,), "attn_resolutions": (8,), "scale": None}  # tiny_unet's own init, one level


class WithIntBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("scale", torch.ones(2))


def _perturb(net: nn.Module, k: int) -> None:
    gen = torch.Generator().manual_seed(k)
    with torch.no_grad():
        for p in [*net.parameters(), *net.buffers()]:
            p.copy_(p + (torch.randn(p.shape, generator=gen) * 3).to(p.dtype))


def test_ema_equals_torch_averaged_model_bit_for_bit_and_across_state_dicts():
    net = WithIntBuffer()
    ours, torchs = EMA(net, 0.9), AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    for k in range(5):
        _perturb(net, k)
        ours.update_parameters(net)
        torchs.update_parameters(net)
        if k == 2:  # a restored EMA (n_averaged > 0) continues with the average, not a copy
            ours = EMA(WithIntBuffer(), 0.9)
            ours.load_state_dict(torchs.state_dict())
        assert ours.state_dict().keys() == torchs.state_dict().keys()
        for name, value in torchs.state_dict().items():
            assert torch.equal(ours.state_dict()[name], value), (k, name)
    fresh = EMA(WithIntBuffer(), 0.9)
    fresh.load_state_dict(EMA(WithIntBuffer(), 0.9).state_dict())  # n_averaged = 0: the next update copies
    fresh.update_parameters(net)
    assert torch.equal(fresh.module.lin.weight, net.lin.weight)


SYNC_METHODS = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy", "cpu")


class _SyncCounter(L.Callback):
    """Counts the Python entry points that copy a tensor's value to the host, from step ``start`` to
    ``stop``; Adam's step counters are excluded: torch keeps them on the CPU on purpose (fused and
    capturable Adam keep them on the device and never read them)."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop, self.calls, self._saved, self._cpu_scalars = start, stop, [], {}, set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.start:
            optimizer = trainer.optimizers[0]
            self._cpu_scalars = {id(s["step"]) for s in optimizer.state.values()}
            for name in SYNC_METHODS:
                self._saved[name] = original = getattr(torch.Tensor, name)
                setattr(torch.Tensor, name, self._counting(name, original))

    def _counting(self, name, original):
        def method(tensor, *args, **kwargs):
            if id(tensor) not in self._cpu_scalars:
                self.calls.append(name)
            return original(tensor, *args, **kwargs)

        return method

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.stop:
            self.restore()

    def restore(self):
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)
        self._saved = {}


def test_training_steps_do_not_read_device_values_between_log_intervals(tmp_path):
    """No `.item()`/`bool()`/... of a tensor in steps 2..7: logging at step 50, no progress bar.

    Every such call blocks the host until the GPU has finished all queued work. (C++-internal syncs
    are invisible here; ``benchmarks/gpu_suite.py`` checks them with torch.cuda.set_sync_debug_mode.)
    """
    module = DDPMLitModule(tiny_unet(1, **ONE_LEVEL), GaussianDiffusion(num_timesteps=50), warmup_steps=3)
    counter = _SyncCounter(start=2, stop=8)
    trainer = L.Trainer(
        max_steps=8, logger=L.pytorch.loggers.CSVLogger(tmp_path), log_every_n_steps=50,
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
        gradient_clip_val=1.0, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[counter],
    )  # fmt: skip
    try:
        trainer.fit(module, torch.utils.data.DataLoader(torch.randn(64, 1, 8, 8), batch_size=4))
    finally:
        counter.restore()
    assert trainer.global_step == 8
    assert counter.calls == [], counter.calls


def _factory(fused):
    return functools.partial(torch.optim.Adam, lr=1e-3, fused=fused)


def test_fused_adam_is_auto_on_cuda_only_and_refused_with_a_grad_scaler():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_fused(_factory(None), cpu, False).keywords["fused"] is None  # torch's default
    assert resolve_fused(_factory(None), cuda, False).keywords["fused"] is True
    assert resolve_fused(_factory(None), cuda, True).keywords["fused"] is None  # 16-mixed: unscaling
    assert resolve_fused(_factory(True), cpu, False).keywords["fused"] is True
    with pytest.raises(ConfigError, match="16-mixed"):
        resolve_fused(_factory(True), cuda, True)
    plain = functools.partial(torch.optim.Adam, lr=1e-3)
    assert resolve_fused(plain, cuda, False) is plain


def test_cpu_optimizer_is_unchanged_by_fused_auto():
    """``fused: null`` (configs/module/ddpm.yaml) builds torch's default Adam on the CPU: same numbers."""
    module = DDPMLitModule(
        tiny_unet(1, **ONE_LEVEL), GaussianDiffusion(num_timesteps=50), optimizer=_factory(None)
    )
    optimizer = module.configure_optimizers()["optimizer"]
    assert optimizer.defaults["fused"] is None and optimizer.defaults["foreach"] is None


def test_compile_flag_keeps_state_dict_keys_and_loads_eager_checkpoints():
    eager = DDPMLitModule(tiny_unet(1, seed=0, **ONE_LEVEL), GaussianDiffusion(num_timesteps=50))
    compiled = DDPMLitModule(
        tiny_unet(1, seed=1, **ONE_LEVEL), GaussianDiffusion(num_timesteps=50), compile=True
    )
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    compiled.load_state_dict(eager.state_dict())
    assert compiled.net._compiled_call_impl is not None  # the network's forward goes through dynamo
    assert compiled.ema_net._compiled_call_impl is None  # the EMA copy stays eager
    assert eager.net._compiled_call_impl is None
    assert compiled.hparams.compile is True


def test_bf16_mixed_loss_is_finite_close_to_fp32_and_weights_and_ema_stay_fp32(tmp_path):
    """Lightning's bf16-mixed on the CPU: autocast around the forward only; the loss is fp32 (the
    output is cast in noised_prediction), the weights and their EMA are fp32 master copies."""

    def run(precision):
        module = DDPMLitModule(
            tiny_unet(1, **ONE_LEVEL), GaussianDiffusion(num_timesteps=50), warmup_steps=0, seed=3
        )
        trainer = L.Trainer(
            max_steps=2, precision=precision, logger=False, enable_progress_bar=False,
            enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0,
        )  # fmt: skip
        data = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
        trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
        return module, trainer.callback_metrics["train/loss"]

    (m16, loss16), (m32, loss32) = run("bf16-mixed"), run("32-true")
    assert loss16.dtype == torch.float32 and torch.isfinite(loss16)
    assert loss16.item() == pytest.approx(loss32.item(), rel=0.05)
    assert {p.dtype for p in [*m16.net.parameters(), *m16.ema_net.parameters()]} == {torch.float32}
    for a, b in zip(m16.ema_net.parameters(), m32.ema_net.parameters()):
        torch.testing.assert_close(a, b, rtol=0.05, atol=2e-3)
