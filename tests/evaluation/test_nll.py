"""The full variational bound: each term vs an independent float64 computation; it falls with training."""

import math

import numpy as np
import pytest
import torch
from scipy.special import ndtr
from torch import nn

from ddpm.diffusion import GaussianDiffusion, SimpleLoss
from ddpm.evaluation.nll import NLLSettings, bound_terms, dataset_nll, dataset_nll_resumable, nll_seeds
from ddpm.sampling import PerSampleNoise
from tests.helpers import tiny_unet
from tests.metrics.helpers import RandomImages

T = 6


class AffineEps(nn.Module):
    """A tiny deterministic 'network': eps_hat = a * x_t + b * t (enough to exercise every formula)."""

    def forward(self, x, t):
        return 0.7 * x + 0.05 * t.view(-1, 1, 1, 1).float()


def independent_terms(x0, eps_by_t, var_type, clip):
    """Numpy float64 implementation of eq. 5 of Ho et al. for one batch: (prior, terms [B, T]) in bits/dim."""
    betas = np.linspace(1e-4, 0.2, T)
    alphas = 1 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    post_var = betas * (1 - abar_prev) / (1 - abar)
    x0 = x0.astype(np.float64)
    dims = x0[0].size

    def gauss_kl(m1, v1, m2, v2):
        return 0.5 * (-1 + np.log(v2) - np.log(v1) + v1 / v2 + (m1 - m2) ** 2 / v2)

    def post_mean(x0_, x_t, t):  # eq. 7
        coef1 = betas[t] * np.sqrt(abar_prev[t]) / (1 - abar[t])
        coef2 = (1 - abar_prev[t]) * np.sqrt(alphas[t]) / (1 - abar[t])
        return coef1 * x0_ + coef2 * x_t

    prior = (
        gauss_kl(np.sqrt(abar[-1]) * x0, 1 - abar[-1], 0.0, 1.0).reshape(len(x0), -1).sum(1)
        / dims
        / math.log(2)
    )
    terms = np.zeros((len(x0), T))
    for t in range(T):
        eps = eps_by_t[t].astype(np.float64)
        x_t = np.sqrt(abar[t]) * x0 + np.sqrt(1 - abar[t]) * eps
        eps_hat = 0.7 * x_t + 0.05 * t
        x0_hat = (x_t - np.sqrt(1 - abar[t]) * eps_hat) / np.sqrt(abar[t])
        if clip:
            x0_hat = np.clip(x0_hat, -1, 1)

        if var_type == "fixed_large":
            var = betas[t] if t > 0 else post_var[1]
        else:
            var = post_var[t] if t > 0 else post_var[1]  # log-variance clipped at t = 0 (official)
        mean = post_mean(x0_hat, x_t, t)
        if t > 0:
            kl = gauss_kl(post_mean(x0, x_t, t), post_var[t], mean, var)
            terms[:, t] = kl.reshape(len(x0), -1).sum(1) / dims / math.log(2)
        else:  # discretised Gaussian decoder (eq. 13) with the official tanh approximation of the CDF
            std = np.sqrt(var)

            def cdf(z):
                return 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))

            upper = np.where(x0 > 0.999, 1.0, cdf((x0 - mean + 1 / 255) / std))
            lower = np.where(x0 < -0.999, 0.0, cdf((x0 - mean - 1 / 255) / std))
            nll = -np.log(np.maximum(upper - lower, 1e-12))
            terms[:, 0] = nll.reshape(len(x0), -1).sum(1) / dims / math.log(2)
            # sanity of the approximation: close to the exact normal CDF
            upper_exact = np.where(x0 > 0.999, 1.0, ndtr((x0 - mean + 1 / 255) / std))
            lower_exact = np.where(x0 < -0.999, 0.0, ndtr((x0 - mean - 1 / 255) / std))
            exact = -np.log(np.maximum(upper_exact - lower_exact, 1e-12)).reshape(len(x0), -1).sum(1) / dims
            np.testing.assert_allclose(terms[:, 0], exact / math.log(2), rtol=2e-3)
    return prior, terms


@pytest.mark.parametrize("var_type", ["fixed_large", "fixed_small"])
@pytest.mark.parametrize("clip", [True, False])
def test_each_term_matches_an_independent_computation(var_type, clip):
    diffusion = GaussianDiffusion("linear", T, 1e-4, 0.2, var_type=var_type)
    x0 = RandomImages(3, shape=(3, 4, 4), seed=1).images
    seeds = nll_seeds(0, range(3))
    result = bound_terms(AffineEps(), diffusion, x0, PerSampleNoise(seeds), clip_denoised=clip)
    # the noise the bound used: the same per-image generators, drawn for t = T-1 .. 0
    noise = PerSampleNoise(seeds)
    eps_by_t = {
        t: noise.randn((3, 4, 4), torch.device("cpu"), torch.float32).numpy() for t in reversed(range(T))
    }
    prior, terms = independent_terms(x0.numpy(), eps_by_t, var_type, clip)
    np.testing.assert_allclose(result.prior.numpy(), prior, rtol=1e-5)
    np.testing.assert_allclose(
        result.terms[:, 1:].numpy(), terms[:, 1:], rtol=1e-4, atol=1e-6
    )  # Gaussian KLs
    np.testing.assert_allclose(result.terms[:, 0].numpy(), terms[:, 0], rtol=1e-4)  # decoder
    np.testing.assert_allclose(result.total.numpy(), prior + terms.sum(1), rtol=1e-4)


def test_bound_is_independent_of_batch_size_and_resumable(tmp_path, monkeypatch):
    diffusion = GaussianDiffusion("linear", T, 1e-4, 0.2)
    data = RandomImages(7, shape=(3, 4, 4))
    a = dataset_nll(AffineEps(), diffusion, data, NLLSettings(batch_size=2)).summary()
    b = dataset_nll(AffineEps(), diffusion, data, NLLSettings(batch_size=7)).summary()
    assert a["bpd"] == pytest.approx(b["bpd"], rel=1e-6)
    np.testing.assert_allclose(a["terms_bpd"], b["terms_bpd"], rtol=1e-6)
    assert a["num_images"] == 7 and len(a["terms_bpd"]) == T and len(a["rate_bpd"]) == T
    assert a["rate_bpd"][-1] == pytest.approx(a["prior_bpd"])  # knowing x_T costs the prior only
    assert a["rate_bpd"][0] + a["terms_bpd"][0] == pytest.approx(a["bpd"])  # + the decoder = everything

    resumed = dataset_nll_resumable(
        AffineEps(),
        diffusion,
        data,
        tmp_path,
        fingerprint="fp",
        settings=NLLSettings(shard_size=3, batch_size=2),
    )
    assert resumed.summary()["bpd"] == pytest.approx(a["bpd"], rel=1e-6)
    first = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("nll_*.npz")}
    assert len(first) == 3
    (tmp_path / "nll_00001.npz").unlink()  # as if killed before shard 1 was written
    again = dataset_nll_resumable(
        AffineEps(),
        diffusion,
        data,
        tmp_path,
        fingerprint="fp",
        settings=NLLSettings(shard_size=3, batch_size=3),
    )
    assert again.summary() == resumed.summary()  # bit-identical: shards summed in order
    assert (tmp_path / "nll_00000.npz").stat().st_mtime_ns == first["nll_00000.npz"]  # kept, not recomputed


def test_bound_of_untrained_model_is_finite_and_falls_with_training():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    def flat_images(n):  # one colour per image: easy to learn
        colour = torch.randint(0, 256, (n, 3, 1, 1), generator=g).float() / 127.5 - 1
        return colour.expand(n, 3, 8, 8).contiguous()

    train, test = flat_images(256), flat_images(8)
    diffusion = GaussianDiffusion("cosine", num_timesteps=20)
    net = tiny_unet(3, scale=None)
    before = dataset_nll(net.eval(), diffusion, test, NLLSettings(batch_size=8)).summary()
    assert math.isfinite(before["bpd"]) and before["bpd"] > 0
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    for _ in range(60):
        loss = SimpleLoss()(net, diffusion, train[torch.randint(0, 256, (32,), generator=g)], g).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = dataset_nll(net.eval(), diffusion, test, NLLSettings(batch_size=8)).summary()
    assert math.isfinite(after["bpd"])
    assert after["bpd"] < before["bpd"] - 1.0, (before["bpd"], after["bpd"])
