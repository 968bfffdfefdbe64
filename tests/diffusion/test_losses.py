"""The VLB loss (the paper's L) for every parameterisation, and SimpleLoss's targets."""

from __future__ import annotations

import pytest
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.diffusion.likelihood import prior_bpd, vlb_term_bpd
from ddpm.diffusion.losses import HybridLoss, SimpleLoss, VLBLoss
from ddpm.errors import ConfigError
from ddpm.testing.oracle import GaussianOracle
from tests.sampling.helpers import TinyNet


@pytest.mark.parametrize("mean_type", ["eps", "x0", "mu"])
@pytest.mark.parametrize("var_type", ["fixed_large", "fixed_small", "learned_range", "learned"])
def test_vlb_loss_runs_for_every_parameterisation(mean_type, var_type):
    d = GaussianDiffusion(num_timesteps=50, mean_type=mean_type, var_type=var_type)
    net = TinyNet(factor=d.output_channels_factor)
    x0 = torch.rand(6, 1, 4, 4) * 2 - 1
    for loss_fn in (VLBLoss(), VLBLoss(rescale=True), HybridLoss(), SimpleLoss()):
        loss = loss_fn(net, d, x0, torch.Generator().manual_seed(0))
        assert loss.shape == (6,) and torch.isfinite(loss).all()
        loss.mean().backward()


def test_vlb_loss_is_the_bound_term_and_rescaled_estimates_the_bound():
    d = GaussianDiffusion(num_timesteps=20)
    net = TinyNet()
    x0 = torch.rand(5, 1, 4, 4) * 2 - 1
    loss = VLBLoss()(net, d, x0, torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(4)
    t = torch.randint(0, 20, (5,), generator=gen)
    x_t = d.q_sample(x0, t, torch.randn(x0.shape, generator=gen))
    expected = vlb_term_bpd(d, net(x_t, t), x0, x_t, t)
    assert torch.allclose(loss, expected)
    rescaled = VLBLoss(rescale=True)(net, d, x0, torch.Generator().manual_seed(4))
    assert torch.allclose(rescaled, 20 * expected + prior_bpd(d, x0))


def test_the_optimal_denoiser_minimises_the_vlb():
    """The exact Gaussian oracle's expected KL terms are below those of perturbed versions of it."""
    d = GaussianDiffusion(num_timesteps=100, var_type="fixed_small")
    oracle = GaussianOracle(d, torch.zeros(1, 4, 4), torch.full((1, 4, 4), 0.3))
    n = 4096
    x0 = oracle.sample_data(n, torch.Generator().manual_seed(0))
    t = torch.randint(1, 100, (n,), generator=torch.Generator().manual_seed(1))
    x_t = d.q_sample(x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(2)))
    eps = oracle(x_t, t)
    best = vlb_term_bpd(d, eps, x0, x_t, t).mean()
    for perturbed in (0.9 * eps, 1.1 * eps, eps + 0.1):
        assert best < vlb_term_bpd(d, perturbed, x0, x_t, t).mean()


def test_simple_loss_targets():
    for mean_type in ("eps", "x0", "mu"):
        d = GaussianDiffusion(num_timesteps=30, mean_type=mean_type)
        x0 = torch.rand(4, 1, 4, 4) * 2 - 1
        gen = torch.Generator().manual_seed(0)
        t = torch.randint(0, 30, (4,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        x_t = d.q_sample(x0, t, noise)
        target = d.training_target(x0, x_t, t, noise)

        def perfect(x, tt, target=target):
            return target

        assert torch.allclose(SimpleLoss()(perfect, d, x0, torch.Generator().manual_seed(0)), torch.zeros(4))


def test_timestep_sampler_must_match_the_diffusion():
    from ddpm.diffusion.timestep_sampler import LossAwareTimestepSampler

    d = GaussianDiffusion(num_timesteps=30)
    with pytest.raises(ConfigError, match="num_timesteps"):
        VLBLoss(LossAwareTimestepSampler(40))(TinyNet(), d, torch.zeros(2, 1, 4, 4))


@pytest.mark.parametrize("loss_fn", [SimpleLoss(), VLBLoss(), HybridLoss()], ids=["simple", "vlb", "hybrid"])
def test_losses_pass_the_conditioning_to_the_model(loss_fn):
    d = GaussianDiffusion(num_timesteps=20)
    net = TinyNet()
    x0 = torch.rand(3, 1, 4, 4) * 2 - 1
    seen = []

    def model(x_t, t, *, scale):
        seen.append(scale)
        assert scale.shape == (x_t.shape[0], 1, 1, 1)
        return net(x_t, t) * scale

    scale = torch.ones(3, 1, 1, 1)
    with_cond = loss_fn(model, d, x0, torch.Generator().manual_seed(1), cond={"scale": scale})
    plain = loss_fn(net, d, x0, torch.Generator().manual_seed(1))
    assert len(seen) == 1 and seen[0] is scale
    assert torch.equal(with_cond, plain)  # the same draws of t and eps
