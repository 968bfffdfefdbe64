"""v-prediction (Salimans & Ho 2022): v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0.

Checked against float64 formulas written out here from a schedule computed with numpy, against the
equivalent eps prediction (reverse process, VLB terms, losses) and on the exact Gaussian oracle: every
sampler driven by the oracle's v gives the samples it gives with the oracle's eps for the same noise.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from ddpm.diffusion import GaussianDiffusion
from ddpm.diffusion.likelihood import bound_term_at, vlb_term_bpd
from ddpm.diffusion.losses import HybridLoss, SimpleLoss, VLBLoss
from ddpm.sampling import AncestralSampler, DDIMSampler, DPMSolverPPSampler, HeunSampler, PerSampleNoise
from ddpm.testing import GaussianOracle, exact_moments
from tests.sampling.helpers import TinyNet, make_oracle

T = 1000


def numpy_abar(num_timesteps: int = T) -> np.ndarray:
    """abar_t of the paper's linear schedule, float64, independently of ddpm.diffusion.schedules."""
    return np.cumprod(1.0 - np.linspace(1e-4, 0.02, num_timesteps, dtype=np.float64))


def draw(n: int = 64, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """(x0, eps, t): float64 images [n, 1, 4, 4] and timesteps covering both ends of the chain."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand((n, 1, 4, 4), generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn((n, 1, 4, 4), generator=g, dtype=torch.float64)
    t = torch.cat([torch.tensor([0, 1, T - 2, T - 1]), torch.randint(0, T, (n - 4,), generator=g)])
    return x0, eps, t


def coefficients(t: Tensor) -> tuple[Tensor, Tensor]:
    """(sqrt(abar_t), sqrt(1 - abar_t)) shaped [B, 1, 1, 1], float64."""
    abar = torch.from_numpy(numpy_abar())[t].view(-1, 1, 1, 1)
    return abar.sqrt(), (1 - abar).sqrt()


class VOracle:
    """The oracle's prediction as v = sqrt(abar) eps* - sqrt(1 - abar) x0*(eps*), computed in float64."""

    def __init__(self, oracle: GaussianOracle) -> None:
        self.oracle = oracle
        self.abar = oracle.diffusion.alphas_cumprod.to(torch.float64)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.oracle.shape

    def __call__(self, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        eps = self.oracle(x_t.double(), t).double()
        abar = self.abar[t].view(-1, *([1] * (x_t.dim() - 1)))
        x0 = (x_t.double() - (1 - abar).sqrt() * eps) / abar.sqrt()
        return (abar.sqrt() * eps - (1 - abar).sqrt() * x0).to(x_t.dtype)


def test_v_conversions_match_the_float64_formulas():
    d = GaussianDiffusion(mean_type="v")
    x0, eps, t = draw()
    a, s = coefficients(t)
    x_t = a * x0 + s * eps
    v = a * eps - s * x0
    assert torch.allclose(d.q_sample(x0, t, eps), x_t, rtol=0, atol=1e-12)
    assert torch.allclose(d.training_target(x0, x_t, t, eps), v, rtol=0, atol=1e-12)
    assert torch.allclose(d.x0_from_v(x_t, t, v), x0, rtol=0, atol=1e-12)
    assert torch.allclose(d.eps_from_v(x_t, t, v), eps, rtol=0, atol=1e-12)
    # through eps, x_0 = (x_t - s eps) / a amplifies rounding by 1 / a (about 160 at t = T - 1)
    assert torch.allclose(d.v_from_eps(x_t, t, eps), v, rtol=0, atol=1e-10)
    params = d.p_mean_variance(v, x_t, t, clip_denoised=False)
    assert torch.allclose(params.pred_x0, x0, rtol=0, atol=1e-12)
    assert torch.allclose(params.pred_eps, eps, rtol=0, atol=1e-12)


def test_unknown_mean_type_names_v_among_the_choices():
    with pytest.raises(Exception, match="eps, x0, mu, v"):
        GaussianDiffusion(mean_type="velocity")  # type: ignore[arg-type]


@pytest.mark.parametrize("var_type", ["fixed_large", "fixed_small", "learned_range"])
@pytest.mark.parametrize("clip", [False, True])
def test_reverse_process_from_v_equals_the_one_from_the_equivalent_eps(var_type, clip):
    d_eps = GaussianDiffusion(var_type=var_type)
    d_v = GaussianDiffusion(var_type=var_type, mean_type="v")
    x0, eps_true, t = draw(seed=1)
    a, s = coefficients(t)
    x_t = a * x0 + s * eps_true
    g = torch.Generator().manual_seed(2)
    eps_hat = eps_true + 0.3 * torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    v_hat = a * eps_hat - s * (x_t - s * eps_hat) / a
    var_half = torch.rand(x0.shape, dtype=x0.dtype, generator=g) * 2 - 1
    out_eps, out_v = eps_hat, v_hat
    if var_type == "learned_range":
        out_eps, out_v = torch.cat([eps_hat, var_half], 1), torch.cat([v_hat, var_half], 1)
    p_eps = d_eps.p_mean_variance(out_eps, x_t, t, clip)
    p_v = d_v.p_mean_variance(out_v, x_t, t, clip)
    for name in ("mean", "variance", "log_variance", "pred_x0", "pred_eps"):
        assert torch.allclose(getattr(p_v, name), getattr(p_eps, name), rtol=1e-9, atol=1e-9), name
    # the VLB terms (KLs for t > 0, the decoder NLL at t = 0) are those of the eps prediction
    x0_8bit = (x0 * 127.5).round() / 127.5
    terms_v = vlb_term_bpd(d_v, out_v, x0_8bit, x_t, t)
    terms_eps = vlb_term_bpd(d_eps, out_eps, x0_8bit, x_t, t)
    assert (t == 0).any() and torch.allclose(terms_v, terms_eps, rtol=1e-7, atol=1e-9)


def test_bound_terms_with_the_v_oracle_equal_those_with_the_eps_oracle():
    d_eps, d_v = (
        GaussianDiffusion(var_type="fixed_small"),
        GaussianDiffusion(var_type="fixed_small", mean_type="v"),
    )
    oracle = make_oracle(d_eps)
    x0 = oracle.sample_data(16, torch.Generator().manual_seed(0)).clamp(-1, 1).double()
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for t in (0, 1, 500, T - 1):
        with_eps = bound_term_at(oracle, d_eps, x0, eps, t, clip_denoised=False)
        with_v = bound_term_at(VOracle(oracle), d_v, x0, eps, t, clip_denoised=False)
        for a, b in zip(with_eps, with_v):
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-9), t


def test_losses_with_a_v_network_are_those_of_the_equivalent_eps_network():
    """L_simple on v is || v err ||^2 = || eps err ||^2 / abar_t; the VLB and hybrid terms are unchanged."""
    d_eps, d_v = GaussianDiffusion(num_timesteps=T), GaussianDiffusion(num_timesteps=T, mean_type="v")
    net = TinyNet()

    def v_net(x_t: Tensor, t: Tensor) -> Tensor:
        return d_v.v_from_eps(x_t.double(), t, net(x_t, t).double()).float()

    x0 = torch.rand(32, 1, 4, 4) * 2 - 1

    def losses(loss_fn, model, d):
        return loss_fn(model, d, x0, torch.Generator().manual_seed(6))

    assert torch.allclose(losses(VLBLoss(), v_net, d_v), losses(VLBLoss(), net, d_eps), rtol=1e-4)
    t = torch.randint(0, T, (32,), generator=torch.Generator().manual_seed(6))  # the losses' draw of t
    abar = torch.from_numpy(numpy_abar())[t].float()
    simple_eps, simple_v = losses(SimpleLoss(), net, d_eps), losses(SimpleLoss(), v_net, d_v)
    assert torch.allclose(simple_v, simple_eps / abar, rtol=1e-4)
    # L_hybrid = L_simple + lambda T L_vlb: the same VLB part
    vb_eps = losses(HybridLoss(), net, d_eps) - simple_eps
    vb_v = losses(HybridLoss(), v_net, d_v) - simple_v
    # (up to float32 rounding of the much larger MSE parts, which the subtraction leaves behind)
    assert vb_eps.abs().max() > 0 and ((vb_v - vb_eps).abs() <= 1e-3 * vb_eps.abs() + 1e-6 * simple_v).all()


# ---------------------------------------------------------------------- samplers on the oracle
SAMPLERS = [
    pytest.param(lambda d: AncestralSampler(d, clip_denoised=False), id="ancestral_1000"),
    pytest.param(lambda d: AncestralSampler(d, steps=50), id="ancestral_respaced_50_clipped"),
    pytest.param(lambda d: DDIMSampler(d, steps=50, clip_denoised=False), id="ddim_50"),
    pytest.param(lambda d: DDIMSampler(d, steps=50, eta=1.0, clip_denoised=False), id="ddim_eta1_50"),
    pytest.param(lambda d: DPMSolverPPSampler(d, steps=20, clip_denoised=False), id="dpm_solver_pp_2m_20"),
    pytest.param(lambda d: DPMSolverPPSampler(d, steps=20, order=3), id="dpm_solver_pp_3m_20_clipped"),
    pytest.param(lambda d: HeunSampler(d, steps=10, clip_denoised=False), id="heun_10"),
    pytest.param(
        lambda d: HeunSampler(d, steps=10, s_churn=40.0, s_tmin=0.05, s_tmax=50.0), id="heun_churn_10"
    ),
]


@pytest.mark.parametrize("make", SAMPLERS)
def test_every_sampler_gives_the_same_samples_from_v_as_from_eps(make):
    d_eps = GaussianDiffusion()
    d_v = GaussianDiffusion(mean_type="v")
    oracle = make_oracle(d_eps)
    seeds = list(range(8))
    from_eps = make(d_eps).sample(oracle, oracle.shape, PerSampleNoise(seeds))
    from_v = make(d_v).sample(VOracle(oracle), oracle.shape, PerSampleNoise(seeds))
    assert torch.isfinite(from_v).all() and from_v.abs().max() < 3
    assert torch.allclose(from_v, from_eps, rtol=1e-4, atol=1e-5), (from_v - from_eps).abs().max()


def test_v_prediction_samples_the_oracle_distribution():
    """Exact output moments of respaced ancestral sampling (250 steps) driven by the v oracle: those with
    the eps oracle, and the data Gaussian within the discretisation bias test_oracle.py allows (Z = 4 at
    N = 2000: 12.6% on the variances)."""
    d_eps, d_v = GaussianDiffusion(), GaussianDiffusion(mean_type="v")
    oracle = make_oracle(d_eps)
    mean, var = exact_moments(AncestralSampler(d_v, steps=250, clip_denoised=False), VOracle(oracle))
    mean_eps, var_eps = exact_moments(AncestralSampler(d_eps, steps=250, clip_denoised=False), oracle)
    assert torch.allclose(mean, mean_eps, rtol=0, atol=1e-10) and torch.allclose(var, var_eps, rtol=1e-9)
    assert torch.allclose(mean, oracle.mean, rtol=0, atol=1e-3)
    assert ((var / oracle.std**2 - 1).abs() < 0.126).all()
