"""The paper's Fig. 5 curve: the figure and the NLL report compute it from the same terms and function."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from ddpm import figures
from ddpm.diffusion import GaussianDiffusion
from ddpm.diffusion.likelihood import bound_terms
from ddpm.evaluation.nll import NLLStatistics
from ddpm.sampling import PerSampleNoise
from ddpm.utils.rng import derive_seed
from tests.sampling.helpers import TinyNet

T = 20


@pytest.fixture(scope="module")
def setup():
    d = GaussianDiffusion(num_timesteps=T, beta_end=0.2)
    x0 = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return TinyNet().eval(), d, x0


def test_figure_and_nll_summary_give_the_same_curve(setup):
    net, d, x0 = setup
    _, data = figures.rate_distortion(net, d, x0, seed=3)
    # the figure's documented noise: image i seeded derive_seed("rate_distortion", seed, i)
    noise = PerSampleNoise([derive_seed("rate_distortion", 3, i) for i in range(5)])
    stats = NLLStatistics(T)
    stats.update(bound_terms(net, d, x0, noise))
    summary = stats.summary()
    assert data["timesteps"] == list(range(T - 1, -1, -1))  # the figure runs from t = T-1 to 0
    for key in ("rate_bpd", "distortion_rmse", "terms_bpd"):
        expected = torch.tensor(summary[key][::-1], dtype=torch.float64)
        assert torch.equal(data[key], expected), key
    assert data["prior_bpd"] == summary["prior_bpd"]
    # the last point: everything but the decoder term L_0 has been sent
    assert float(data["rate_bpd"][-1]) == pytest.approx(summary["bpd"] - summary["decoder_bpd"], rel=1e-12)
    assert float(data["rate_bpd"][0]) == pytest.approx(summary["prior_bpd"], rel=1e-12)


def test_subset_of_timesteps_uses_the_same_terms_and_curve(setup):
    net, d, x0 = setup
    _, data = figures.rate_distortion(net, d, x0, num_points=6, seed=3)
    ts, weights, terms = data["timesteps"], data["weights"], data["terms_bpd"]
    assert len(ts) == 6 and ts[0] == T - 1 and ts[-1] == 0 and sum(weights) == T and weights[-1] == 1
    # each evaluated term stands for `weight` timesteps; at t = 0 the rate is prior + the weighted KL terms
    expected_last = data["prior_bpd"] + sum(w * float(term) for w, term in zip(weights[:-1], terms[:-1]))
    assert float(data["rate_bpd"][-1]) == pytest.approx(expected_last, rel=1e-12)
    assert float(data["rate_bpd"][0]) == pytest.approx(data["prior_bpd"], rel=1e-12)
    assert torch.all(data["rate_bpd"][1:] >= data["rate_bpd"][:-1])
