"""q(x_t | x_0) sampling statistics, the posterior, and the eps <-> x0 <-> mean conversions."""

import math

import numpy as np
import pytest
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.diffusion.likelihood import vlb_term_bpd


@pytest.fixture(scope="module")
def diffusion():
    return GaussianDiffusion()


def test_q_sample_statistics(diffusion):
    """Over many draws, x_t has mean sqrt(abar_t) x0 and variance 1 - abar_t (eq. 4)."""
    gen = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.tensor([0.7, -0.3, 0.0, 1.0]).repeat(n, 1)
    for t_index in (0, 10, 300, 999):
        t = torch.full((n,), t_index, dtype=torch.long)
        xt = diffusion.q_sample(x0, t, torch.randn(x0.shape, generator=gen))
        abar = diffusion.alphas_cumprod[t_index].item()
        se_mean = np.sqrt((1 - abar) / n)
        np.testing.assert_allclose(xt.mean(0).numpy(), np.sqrt(abar) * x0[0].numpy(), atol=5 * se_mean + 1e-6)
        # standard error of a sample variance ~ var * sqrt(2 / n)
        np.testing.assert_allclose(xt.var(0).numpy(), 1 - abar, rtol=5 * np.sqrt(2 / n), atol=1e-7)


def test_posterior_matches_bayes_rule_in_float64(diffusion):
    """q(x_{t-1} | x_t, x_0) from the product of the two Gaussians, computed independently."""
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(6, 3, dtype=torch.float64, generator=gen)
    xt = torch.randn(6, 3, dtype=torch.float64, generator=gen)
    t = torch.tensor([1, 5, 50, 500, 998, 999])
    mean, var, logvar = diffusion.q_posterior(x0, xt, t)
    betas = diffusion.betas.numpy()
    abar = diffusion.alphas_cumprod.numpy()
    for i, ti in enumerate(t.tolist()):
        # prior x_{t-1} ~ N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}); x_t | x_{t-1} ~ N(sqrt(a_t) x_{t-1}, b_t)
        a, b = 1 - betas[ti], betas[ti]
        prior_mean, prior_var = np.sqrt(abar[ti - 1]) * x0[i].numpy(), 1 - abar[ti - 1]
        precision = 1 / prior_var + a / b
        exp_var = 1 / precision
        exp_mean = exp_var * (prior_mean / prior_var + np.sqrt(a) * xt[i].numpy() / b)
        np.testing.assert_allclose(mean[i].numpy(), exp_mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(var[i].numpy(), exp_var, rtol=1e-10)
        np.testing.assert_allclose(logvar[i].numpy(), np.log(exp_var), rtol=1e-10)


def test_posterior_at_t0_returns_x0_and_clipped_log_variance(diffusion):
    x0 = torch.randn(2, 3, dtype=torch.float64)
    xt = torch.randn(2, 3, dtype=torch.float64)
    t = torch.zeros(2, dtype=torch.long)
    mean, var, logvar = diffusion.q_posterior(x0, xt, t)
    torch.testing.assert_close(mean, x0)
    assert torch.all(var == 0)
    assert torch.allclose(logvar, diffusion.posterior_variance[1].log().expand_as(logvar))


def test_conversions_round_trip(diffusion):
    gen = torch.Generator().manual_seed(2)
    x0 = torch.randn(8, 3, 4, 4, dtype=torch.float64, generator=gen)
    eps = torch.randn(8, 3, 4, 4, dtype=torch.float64, generator=gen)
    t = torch.tensor([0, 1, 2, 10, 100, 500, 900, 999])
    xt = diffusion.q_sample(x0, t, eps)
    torch.testing.assert_close(diffusion.x0_from_eps(xt, t, eps), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(diffusion.eps_from_x0(xt, t, x0), eps, rtol=1e-9, atol=1e-9)
    mean, _, _ = diffusion.q_posterior(x0, xt, t)
    torch.testing.assert_close(diffusion.mean_from_eps(xt, t, eps), mean, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(diffusion.x0_from_mean(xt, t, mean), x0, rtol=1e-7, atol=1e-7)


def test_p_mean_variance_for_each_parameterisation(diffusion):
    gen = torch.Generator().manual_seed(3)
    x0 = torch.rand(4, 1, 2, 2, dtype=torch.float64, generator=gen) * 1.6 - 0.8
    eps = torch.randn(4, 1, 2, 2, dtype=torch.float64, generator=gen)
    t = torch.tensor([3, 30, 300, 999])
    xt = diffusion.q_sample(x0, t, eps)
    mean, _, _ = diffusion.q_posterior(x0, xt, t)
    for mean_type, output in (("eps", eps), ("x0", x0), ("mu", mean)):
        d = GaussianDiffusion(mean_type=mean_type)
        params = d.p_mean_variance(output, xt, t, clip_denoised=False)
        torch.testing.assert_close(params.pred_x0, x0, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(params.mean, mean, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(params.pred_eps, eps, rtol=1e-5, atol=1e-5)


def test_reverse_variances(diffusion):
    t = torch.tensor([0, 1, 999])
    like = torch.zeros(3, 1)
    large, _ = GaussianDiffusion(var_type="fixed_large").reverse_variance(t, like)
    small, _ = GaussianDiffusion(var_type="fixed_small").reverse_variance(t, like)
    post = diffusion.posterior_variance
    expected_large = torch.stack([post[1], diffusion.betas[1], diffusion.betas[999]]).float()
    torch.testing.assert_close(large.view(-1), expected_large)
    torch.testing.assert_close(small.view(-1), post[t].float())
    learned = GaussianDiffusion(var_type="learned_range")
    lo, _ = learned.reverse_variance(t, like, -torch.ones(3, 1))
    hi, _ = learned.reverse_variance(t, like, torch.ones(3, 1))
    # the lower end is the *clipped* posterior log-variance (finite at t = 0), as in improved DDPM
    torch.testing.assert_close(lo.view(-1), diffusion.posterior_log_variance_clipped[t].exp().float())
    torch.testing.assert_close(hi.view(-1), diffusion.betas[t].float())


def test_coefficients_cast_to_input_dtype(diffusion):
    x = torch.randn(2, 3, dtype=torch.float32)
    t = torch.tensor([1, 2])
    assert diffusion.q_sample(x, t, x).dtype == torch.float32


# ---------------------------------------------------------------------- mean_type="mu"
def _numpy_posterior(T: int, t: int) -> tuple[float, float, float]:
    """(coef1, coef2, posterior variance) of q(x_{t-1} | x_t, x_0) (eqs. 6-7) for the linear schedule."""
    betas = np.linspace(1e-4, 0.02, T)
    abar = np.cumprod(1 - betas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    coef1 = betas[t] * np.sqrt(abar_prev[t]) / (1 - abar[t])
    coef2 = (1 - abar_prev[t]) * np.sqrt(1 - betas[t]) / (1 - abar[t])
    return coef1, coef2, betas[t] * (1 - abar_prev[t]) / (1 - abar[t])


def test_mu_prediction_keeps_the_network_mean_when_clipping():
    """As the official p_mean_variance: a mu network's output is the mean; only x_0 is clipped."""
    T, t = 50, 7
    d = GaussianDiffusion(num_timesteps=T, mean_type="mu", var_type="fixed_small")
    gen = torch.Generator().manual_seed(0)
    x0 = (torch.randint(0, 256, (3, 1, 2, 2), generator=gen).double() / 127.5) - 1
    x_t = d.q_sample(x0, torch.full((3,), t), torch.randn(x0.shape, generator=gen, dtype=torch.float64))
    coef1, coef2, post_var = _numpy_posterior(T, t)
    implied_x0 = 3.0 * torch.randn(x0.shape, generator=gen, dtype=torch.float64)  # leaves [-1, 1]
    mu = coef1 * implied_x0 + coef2 * x_t  # the network output
    tt = torch.full((3,), t)
    params = d.p_mean_variance(mu, x_t, tt, clip_denoised=True)
    assert torch.equal(params.mean, mu)
    assert (implied_x0.abs() > 1).any() and params.pred_x0.abs().max() <= 1
    torch.testing.assert_close(params.pred_x0, implied_x0.clamp(-1, 1), rtol=1e-9, atol=1e-9)
    # the KL term uses the unclipped mean: KL(N(mu~, s^2) || N(mu, s^2)) = (mu~ - mu)^2 / (2 s^2)
    true_mean = (coef1 * x0 + coef2 * x_t).numpy()
    expected = ((true_mean - mu.numpy()) ** 2 / (2 * post_var)).reshape(3, -1).mean(1) / math.log(2)
    for clip in (True, False):
        got = vlb_term_bpd(d, mu, x0, x_t, tt, clip_denoised=clip)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)
