"""The paper's figures as functions, driven by the exact Gaussian denoiser and a small random network."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.figure import Figure

from ddpm import figures
from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling import AncestralSampler, DDIMSampler
from tests.sampling.helpers import TinyNet, make_oracle

SHAPE = (1, 8, 8)
D = GaussianDiffusion()  # T = 1000; chains are respaced to keep the tests fast
FAST = AncestralSampler(D, steps=50)


@pytest.fixture(scope="module")
def oracle():
    return make_oracle(D, shape=SHAPE, std=(0.05, 0.2))


def _saves(fig: Figure, tmp_path) -> None:
    assert isinstance(fig, Figure)
    fig.savefig(tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 0


def test_forward_process_strip(oracle, tmp_path):
    x0 = oracle.sample_data(3, torch.Generator().manual_seed(0))
    fig, strips = figures.forward_process_strip(D, x0, timesteps=(0, 100, 500, 999))
    assert strips.shape == (3, 4, *SHAPE)
    assert (strips[:, 0] - x0).abs().max() < 0.05  # t = 1 is nearly the data
    assert abs(strips[:, -1].std().item() - 1) < 0.2  # t = T is nearly N(0, I)
    _saves(fig, tmp_path)


def test_progressive_generation(oracle, tmp_path):
    fig, data = figures.progressive_generation(oracle, D, SHAPE, num_samples=3, num_frames=5, sampler=FAST)
    assert data["timesteps"][0] > data["timesteps"][-1] == 0
    assert data["pred_x0"].shape[:2] == (len(data["timesteps"]), 3)
    assert torch.allclose(data["pred_x0"][-1], data["samples"])  # the last prediction is the sample
    # early predictions are close to the data mean (the large-scale content), later ones vary around it
    early_spread = (data["pred_x0"][0] - oracle.mean.float()).abs().mean()
    late_spread = (data["pred_x0"][-1] - oracle.mean.float()).abs().mean()
    assert early_spread < late_spread
    _saves(fig, tmp_path)


def test_shared_latent_samples_share_more_the_smaller_t(oracle, tmp_path):
    x0 = oracle.sample_data(1, torch.Generator().manual_seed(1))[0]
    fig, data = figures.shared_latent_samples(
        oracle, D, x0, timesteps=(999, 500, 100), num_samples=6, sampler=FAST
    )
    assert data["samples"].shape == (3, 6, *SHAPE)
    spread = data["samples"].std(dim=1).mean(dim=(1, 2, 3))
    assert spread[0] > spread[1] > spread[2]
    _saves(fig, tmp_path)


def test_interpolation_is_affine_in_lambda_for_the_affine_oracle(oracle, tmp_path):
    x = oracle.sample_data(2, torch.Generator().manual_seed(2))
    fig, data = figures.interpolate(oracle, D, x[0], x[1], t=500, num_steps=5, sampler=FAST)
    images, lam = data["images"], data["lambdas"].view(-1, 1, 1, 1)
    # with shared reverse noise and an affine denoiser the decoder is affine in the latent
    expected = (1 - lam) * images[0] + lam * images[-1]
    assert torch.allclose(images, expected, atol=1e-4)
    assert not torch.allclose(images[0], images[-1])
    _saves(fig, tmp_path)


def test_inpainting_keeps_the_known_pixels(oracle, tmp_path):
    x0 = oracle.sample_data(1, torch.Generator().manual_seed(3))[0]
    mask = figures.center_mask(SHAPE, 0.5)
    fig, data = figures.inpaint(oracle, D, x0, mask, num_samples=4, sampler=FAST)
    samples = data["samples"]
    known = mask.bool().expand_as(samples)
    assert torch.equal(samples[known], x0.expand_as(samples)[known])
    assert not torch.allclose(samples[0][~known[0]], samples[1][~known[1]])
    _saves(fig, tmp_path)


def test_inpainting_with_a_network_and_a_respaced_chain(tmp_path):
    net = TinyNet().eval()
    x0 = torch.rand(2, *SHAPE) * 2 - 1
    fig, data = figures.inpaint(net, D, x0, sampler=AncestralSampler(D, steps=10))
    assert torch.equal(data["samples"][data["mask"].bool()], x0[data["mask"].bool()])
    assert data["samples"].shape == x0.shape
    _saves(fig, tmp_path)


def test_rate_distortion(oracle, tmp_path):
    x0 = oracle.sample_data(16, torch.Generator().manual_seed(4))
    d100 = GaussianDiffusion(num_timesteps=100)
    fig, data = figures.rate_distortion(oracle, d100, x0)
    rate, dist = data["rate_bpd"], data["distortion_rmse"]
    assert data["timesteps"] == list(range(99, -1, -1)) and data["weights"] == [1] * 100
    assert torch.all(rate[1:] >= rate[:-1] - 1e-6)  # cumulative
    assert dist[-1] < dist[0] / 5  # the prediction from x_1 is far better than from x_T
    _, sparse = figures.rate_distortion(oracle, d100, x0, num_points=30)
    assert len(sparse["timesteps"]) == 30 and sum(sparse["weights"]) == 100
    assert abs(sparse["rate_bpd"][-1] - rate[-1]) < 0.1 * rate[-1]  # the midpoint sum approximates the total
    _saves(fig, tmp_path)


def test_figure_functions_validate_inputs(oracle):
    with pytest.raises(ConfigError):
        figures.rate_distortion(oracle, D, torch.zeros(1, *SHAPE), num_points=1)
    with pytest.raises(ConfigError, match="AncestralSampler"):
        figures.progressive_generation(oracle, D, SHAPE, sampler=DDIMSampler(D, steps=5))
    assert figures.snap_timestep(57, [0, 25, 50, 75, 99]) == 50
