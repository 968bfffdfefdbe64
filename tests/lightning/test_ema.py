"""EMA: closed form after k updates, first update copies, updated after every optimizer step."""

import pytest
import torch
from torch import nn

from ddpm.diffusion import GaussianDiffusion
from ddpm.lightning import DDPMLitModule
from tests.helpers import tiny_unet


class Affine(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))

    def forward(self, x, t):
        return x * self.w.view(1, -1, 1, 1)


def test_first_update_copies_and_closed_form_after_k_steps():
    decay = 0.9
    module = DDPMLitModule(Affine(), GaussianDiffusion(num_timesteps=10), ema_decay=decay)
    values = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-1.0, 0.5, 4.0]), torch.tensor([0.0, 0.0, 10.0])]
    values += [torch.randn(3, generator=torch.Generator().manual_seed(k)) for k in range(5)]
    for k, v in enumerate(values, start=1):
        module.net.w.data.copy_(v)
        module.ema.update_parameters(module.net)
        if k == 1:
            assert torch.equal(module.ema_net.w, v), "the first update must copy the weights"
        # closed form: ema_k = d^(k-1) p_1 + sum_{j=2}^{k} (1 - d) d^(k-j) p_j  (float64 reference)
        expected = decay ** (k - 1) * values[0].double()
        for j in range(2, k + 1):
            expected = expected + (1 - decay) * decay ** (k - j) * values[j - 1].double()
        torch.testing.assert_close(module.ema_net.w.double(), expected, rtol=1e-6, atol=1e-6)


def test_ema_is_not_trained_and_not_in_the_optimizer():
    module = DDPMLitModule(Affine(), GaussianDiffusion(num_timesteps=10))
    assert not any(p.requires_grad for p in module.ema.parameters())
    optimizer = module.configure_optimizers()["optimizer"]
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.net.parameters()}


@pytest.mark.parametrize("warmup", [0, 4])
def test_linear_warmup_then_constant(warmup):
    module = DDPMLitModule(Affine(), GaussianDiffusion(num_timesteps=10), warmup_steps=warmup)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(7):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [2e-4 * (min(s / warmup, 1.0) if warmup else 1.0) for s in range(7)]
    assert lrs == pytest.approx(expected)


def test_channels_last_module_matches_contiguous():
    def make(channels_last):
        net = tiny_unet(1)  # random weights (not the zero init): the outputs are non-trivial
        return DDPMLitModule(net, GaussianDiffusion(num_timesteps=10), channels_last=channels_last)

    plain, cl = make(False), make(True)
    assert cl.net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert cl.ema_net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([1, 7])
    torch.testing.assert_close(
        cl(x.contiguous(memory_format=torch.channels_last), t), plain(x, t), rtol=1e-5, atol=1e-5
    )
