"""The variational-bound terms against independent computations."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from ddpm.diffusion import GaussianDiffusion
from ddpm.diffusion.likelihood import (
    bound_terms,
    discretized_gaussian_log_likelihood,
    normal_kl,
    prior_bpd,
    rate_distortion_curve,
    vlb_term_bpd,
)


def test_normal_kl_closed_form():
    m1, v1, m2, v2 = 0.3, 0.5, -0.2, 2.0
    expected = math.log(math.sqrt(v2) / math.sqrt(v1)) + (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5
    got = normal_kl(*(torch.tensor(v, dtype=torch.float64) for v in (m1, math.log(v1), m2, math.log(v2))))
    assert abs(got.item() - expected) < 1e-12


def test_discretized_gaussian_against_scipy():
    """Bin probabilities of the 256-bin decoder (eq. 13) with the exact normal CDF."""
    mean, scale = 0.1, 0.05
    x = torch.tensor([-1.0, -0.5, 0.1, 0.6, 1.0], dtype=torch.float64)
    got = discretized_gaussian_log_likelihood(
        x, torch.full_like(x, mean), torch.full_like(x, math.log(scale))
    )
    expected = []
    for xi in x.tolist():
        hi = math.inf if xi > 0.999 else xi + 1 / 255
        lo = -math.inf if xi < -0.999 else xi - 1 / 255
        expected.append(math.log(max(norm.cdf(hi, mean, scale) - norm.cdf(lo, mean, scale), 1e-12)))
    # the official code uses a tanh approximation of the CDF: agreement to ~1e-3 in log-prob
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-3)


def test_decoder_probabilities_sum_to_one():
    bins = torch.linspace(-1, 1, 256, dtype=torch.float64)
    logp = discretized_gaussian_log_likelihood(bins, torch.full_like(bins, 0.2), torch.full_like(bins, -2.0))
    assert abs(logp.exp().sum().item() - 1.0) < 1e-6


def test_prior_term_matches_closed_form():
    d = GaussianDiffusion()
    x0 = torch.tensor([[[[1.0, -1.0]]]])
    abar = d.alphas_cumprod[-1].item()
    kl = [0.5 * (-1 - math.log(1 - abar) + (1 - abar) + abar * v**2) for v in (1.0, -1.0)]
    assert abs(prior_bpd(d, x0).item() - np.mean(kl) / math.log(2)) < 1e-6


def test_vlb_term_kl_and_decoder():
    d = GaussianDiffusion(var_type="fixed_small")
    gen = torch.Generator().manual_seed(0)
    x0 = (torch.randint(0, 256, (2, 1, 2, 2), generator=gen).double() / 127.5) - 1
    eps = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    t = torch.tensor([0, 10])
    xt = d.q_sample(x0, t, eps)
    # a perfect eps gives KL 0 for t > 0 (fixed_small: same variance as the posterior)
    out = vlb_term_bpd(d, eps, x0, xt, t)
    assert abs(out[1].item()) < 1e-6
    # t = 0: decoder NLL of x0 under N(mean, sigma_1^2) discretised, in bits/dim
    params = d.p_mean_variance(eps, xt, t, clip_denoised=False)
    logp = discretized_gaussian_log_likelihood(x0, params.mean, 0.5 * params.log_variance)[0]
    assert abs(out[0].item() - (-logp.mean().item() / math.log(2))) < 1e-9


# ---------------------------------------------------------------------- the whole bound
def test_bound_terms_pass_the_conditioning_to_every_call():
    d = GaussianDiffusion(num_timesteps=4)
    calls = []

    def model(x_t, t, *, label):
        calls.append(int(t[0]))
        assert label.shape == (x_t.shape[0],)
        return 0.5 * x_t

    noise = _Noise(torch.Generator().manual_seed(0), batch=2)
    terms = bound_terms(model, d, torch.zeros(2, 1, 2, 2), noise, cond={"label": torch.tensor([1, 2])})
    assert calls == [3, 2, 1, 0] and terms.terms.shape == (2, 4) and terms.terms.dtype == torch.float64
    assert torch.equal(terms.total, terms.prior + terms.terms.sum(1))


class _Noise:
    """The duck-typed noise source of bound_terms: ``randn(shape, device, dtype) -> [B, *shape]``."""

    def __init__(self, generator: torch.Generator, batch: int) -> None:
        self.generator, self.batch = generator, batch

    def randn(self, shape, device, dtype):
        return torch.randn((self.batch, *shape), generator=self.generator, device=device, dtype=dtype)


def test_rate_distortion_curve_closed_form():
    """rate[k] = L_T + sum_{j>k} L_j (float64): the prior alone at k = T-1, the bound minus L_0 at k = 0."""
    gen = torch.Generator().manual_seed(0)
    prior = torch.tensor(1e-3, dtype=torch.float64)
    terms = torch.rand(12, generator=gen, dtype=torch.float64)
    mse = torch.rand(12, generator=gen, dtype=torch.float64) * 0.1
    rate, distortion = rate_distortion_curve(prior, terms, mse)
    expected = [float(prior) + sum(float(terms[j]) for j in range(k + 1, 12)) for k in range(12)]
    np.testing.assert_allclose(rate.numpy(), expected, rtol=1e-14)
    assert float(rate[-1]) == pytest.approx(float(prior), rel=1e-12)
    assert float(rate[0]) == pytest.approx(float(prior + terms.sum() - terms[0]), rel=1e-14)
    np.testing.assert_allclose(distortion.numpy(), np.sqrt(mse.numpy()) * 127.5, rtol=1e-14)
    assert rate.dtype == distortion.dtype == torch.float64
