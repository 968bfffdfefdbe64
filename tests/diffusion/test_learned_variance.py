"""Learned reverse variance: output shape, interpolation bounds, hybrid-loss gradient flow."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from ddpm.diffusion import GaussianDiffusion
from ddpm.diffusion.losses import HybridLoss, SimpleLoss, VLBLoss
from tests.helpers import tiny_unet


@pytest.mark.parametrize("var_type", ["learned_range", "learned"])
def test_learned_variance_network_outputs_twice_the_channels(var_type):
    d = GaussianDiffusion(num_timesteps=100, var_type=var_type)
    assert d.output_channels_factor == 2
    net = tiny_unet(1, out_channels=2 * 1, attn_resolutions=(), scale=None)
    x = torch.randn(3, 1, 8, 8)
    t = torch.tensor([0, 50, 99])
    out = net(x, t)
    assert out.shape == (3, 2, 8, 8)
    mean_part, var_part = d.split_output(out)
    assert mean_part.shape == var_part.shape == (3, 1, 8, 8)
    params = d.p_mean_variance(out, x, t)
    assert params.mean.shape == params.variance.shape == params.log_variance.shape == x.shape


def test_learned_range_interpolates_between_posterior_variance_and_beta():
    """Improved DDPM eq. 15: v = -1 gives beta~_t, v = +1 gives beta_t, monotone in between (log space)."""
    d = GaussianDiffusion(var_type="learned_range")
    t = torch.arange(0, 1000, 7)
    like = torch.zeros(len(t), 1, 2, 2)
    lo = d.posterior_log_variance_clipped[t].float().view(-1, 1, 1, 1)
    hi = d.betas[t].log().float().view(-1, 1, 1, 1)
    prev = None
    for v in torch.linspace(-1, 1, 9):
        variance, log_variance = d.reverse_variance(t, like, torch.full_like(like, float(v)))
        assert torch.allclose(variance.log(), log_variance, atol=1e-5)
        assert torch.all(log_variance >= lo - 1e-5) and torch.all(log_variance <= hi + 1e-5)
        if prev is not None:
            assert torch.all(log_variance >= prev - 1e-6)
        prev = log_variance
    _, at_lo = d.reverse_variance(t, like, torch.full_like(like, -1.0))
    _, at_hi = d.reverse_variance(t, like, torch.full_like(like, 1.0))
    assert torch.allclose(at_lo, lo.expand_as(at_lo), atol=1e-5)
    assert torch.allclose(at_hi, hi.expand_as(at_hi), atol=1e-5)
    # the posterior variance is below beta_t for every t > 0 (the bounds are ordered)
    assert torch.all(d.posterior_variance[1:] <= d.betas[1:])


def test_learned_log_variance_is_used_as_is():
    d = GaussianDiffusion(num_timesteps=10, var_type="learned")
    like = torch.zeros(2, 1, 2, 2)
    var_part = torch.full_like(like, -3.0)
    variance, log_variance = d.reverse_variance(torch.tensor([1, 5]), like, var_part)
    assert torch.equal(log_variance, var_part)
    assert torch.allclose(variance, torch.exp(var_part))


class SplitNet(nn.Module):
    """Mean and variance halves from separate parameters, so gradients can be attributed."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mean_conv = nn.Conv2d(1, 1, 3, padding=1)
        self.var_conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.cat([self.mean_conv(x), torch.tanh(self.var_conv(x))], dim=1)


def grads(net: SplitNet, loss: Tensor) -> dict[str, Tensor | None]:
    net.zero_grad()
    loss.mean().backward()
    return {n: (p.grad.clone() if p.grad is not None else None) for n, p in net.named_parameters()}


def test_hybrid_loss_vlb_term_does_not_train_the_mean():
    d = GaussianDiffusion(num_timesteps=100, var_type="learned_range")
    net = SplitNet()
    x0 = torch.rand(8, 1, 8, 8) * 2 - 1

    def gen():
        return torch.Generator().manual_seed(3)

    g_hybrid = grads(net, HybridLoss(lambda_vlb=0.001)(net, d, x0, gen()))
    g_simple = grads(net, SimpleLoss()(net, d, x0, gen()))
    g_vlb_only = grads(net, HybridLoss(lambda_vlb=0.001)(net, d, x0, gen()) - SimpleLoss()(net, d, x0, gen()))
    # the mean parameters get exactly the L_simple gradient ...
    for name in ("mean_conv.weight", "mean_conv.bias"):
        assert torch.allclose(g_hybrid[name], g_simple[name], atol=1e-7), name
        assert g_vlb_only[name] is not None and g_vlb_only[name].abs().max() < 1e-7
    # ... and the variance parameters only the VLB gradient (L_simple does not see them)
    for name in ("var_conv.weight", "var_conv.bias"):
        assert g_simple[name] is None or g_simple[name].abs().max() == 0
        assert g_hybrid[name].abs().max() > 0, name


def test_vlb_loss_trains_both_halves():
    d = GaussianDiffusion(num_timesteps=100, var_type="learned_range")
    net = SplitNet()
    g = grads(net, VLBLoss()(net, d, torch.rand(8, 1, 8, 8) * 2 - 1, torch.Generator().manual_seed(0)))
    assert all(v is not None and v.abs().max() > 0 for v in g.values())


def test_hybrid_loss_value_is_simple_plus_scaled_vlb():
    from ddpm.diffusion.likelihood import vlb_term_bpd

    d = GaussianDiffusion(num_timesteps=100, var_type="learned_range")
    net = SplitNet()
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    hybrid = HybridLoss(lambda_vlb=0.5)(net, d, x0, torch.Generator().manual_seed(1))
    simple = SimpleLoss()(net, d, x0, torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(1)
    t = torch.randint(0, 100, (4,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    x_t = d.q_sample(x0, t, noise)
    vb = vlb_term_bpd(d, net(x_t, t), x0, x_t, t)
    assert torch.allclose(hybrid, simple + 0.5 * 100 * vb, atol=1e-5)
