"""Properties of the samplers: determinism, invertibility, exact respacing, equivalences, per-sample seeds."""

from __future__ import annotations

import pytest
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling import (
    AncestralSampler,
    DDIMSampler,
    DPMSolverPPSampler,
    PerSampleNoise,
    Sampler,
    SpacedDiffusion,
    make_sampler,
    sample,
)
from ddpm.testing import BatchNoise
from tests.sampling.helpers import TinyNet, make_oracle, oracle_as

SHAPE = (1, 4, 4)


def test_ddim_eta0_is_deterministic():
    d = GaussianDiffusion(num_timesteps=200)
    net = TinyNet().eval()
    sampler = DDIMSampler(d, steps=20)
    x_T = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(0))
    a = sampler.sample_from(net, x_T.clone(), sampler.timesteps[-1])
    b = sampler.sample_from(
        net, x_T.clone(), sampler.timesteps[-1], BatchNoise(3, torch.Generator().manual_seed(5))
    )
    assert torch.equal(a, b)
    # from the same seeds the whole sampler is reproducible; different seeds differ only through x_T
    s1 = sampler.sample(net, SHAPE, PerSampleNoise([1, 2, 3]))
    s2 = sampler.sample(net, SHAPE, PerSampleNoise([1, 2, 3]))
    assert torch.equal(s1, s2)


def test_ddim_encode_decode_recovers_input_in_the_limit_of_many_steps():
    d = GaussianDiffusion()
    oracle = make_oracle(d, std=(0.1, 0.3))
    x0 = oracle.sample_data(64, torch.Generator().manual_seed(0))
    errors = {}
    for steps in (20, 100, 1000):
        sampler = DDIMSampler(d, steps=steps, clip_denoised=False)
        latent = sampler.encode(oracle, x0)
        if steps == 1000:  # the exact ODE maps the data Gaussian to N(0, I)
            assert abs(latent.std().item() - 1) < 0.1
        recon = sampler.sample_from(oracle, latent, sampler.timesteps[-1])
        errors[steps] = (recon - x0).abs().max().item()
    assert errors[1000] < 0.02, errors
    assert errors[1000] < errors[100] / 4 < errors[20] / 8, errors


def test_ddim_encode_to_intermediate_t_and_back():
    d = GaussianDiffusion()
    oracle = make_oracle(d)
    x0 = oracle.sample_data(16, torch.Generator().manual_seed(1))
    sampler = DDIMSampler(d, steps=None, clip_denoised=False)  # all 1000 steps
    latent = sampler.encode(oracle, x0, t_end=400)
    recon = sampler.sample_from(oracle, latent, 400)
    assert (recon - x0).abs().max() < 0.01


def test_spaced_diffusion_on_the_full_sequence_is_the_original_bit_for_bit():
    for schedule in ("linear", "cosine", "quadratic"):
        d = GaussianDiffusion(schedule=schedule, var_type="learned_range")
        spaced = SpacedDiffusion(d, range(d.num_timesteps))
        spaced_buffers = dict(spaced.named_buffers())
        for name, value in d.named_buffers():
            assert torch.equal(value, spaced_buffers[name]), (schedule, name)


def test_spaced_diffusion_keeps_the_cumulative_products():
    d = GaussianDiffusion()
    ts = [0, 3, 10, 250, 251, 600, 999]
    spaced = SpacedDiffusion(d, ts)
    assert torch.allclose(spaced.alphas_cumprod, d.alphas_cumprod[ts], rtol=1e-12, atol=0)
    assert torch.equal(spaced.betas[4], d.betas[251])  # one-step gap: the original beta
    assert spaced.timesteps == ts


@pytest.mark.parametrize(
    ("mean_type", "var_type"),
    [("eps", "fixed_large"), ("eps", "learned_range"), ("x0", "fixed_small"), ("mu", "fixed_large")],
)
def test_respaced_ddpm_on_the_full_sequence_equals_plain_ddpm_exactly(mean_type, var_type):
    d = GaussianDiffusion(num_timesteps=100, mean_type=mean_type, var_type=var_type)
    net = TinyNet(factor=d.output_channels_factor).eval()
    plain = AncestralSampler(d).sample(net, SHAPE, PerSampleNoise(range(4)))
    respaced_sampler = AncestralSampler(d, steps=100)
    assert respaced_sampler.respaced
    respaced = respaced_sampler.sample(net, SHAPE, PerSampleNoise(range(4)))
    assert torch.equal(plain, respaced)


def test_respaced_sampler_calls_the_model_with_original_timesteps():
    d = GaussianDiffusion()
    net = TinyNet().eval()
    sampler = AncestralSampler(d, steps=10)
    sampler.sample(net, SHAPE, PerSampleNoise([0, 1]))
    seen = [t[0] for t in net.seen_t]
    assert seen == sampler.timesteps[::-1]
    assert seen[0] == 999 and seen[-1] == 0


def test_ddim_eta1_is_ancestral_sampling_with_the_posterior_variance():
    """DDIM eq. 16 with eta=1 is the DDPM step with sigma^2 = posterior variance of the (respaced) chain."""
    d_small = GaussianDiffusion(var_type="fixed_small")
    oracle = make_oracle(d_small)
    for steps in (10, 100):
        a = DDIMSampler(d_small, steps=steps, eta=1.0).sample(oracle, SHAPE, PerSampleNoise(range(8)))
        b = AncestralSampler(d_small, steps=steps).sample(oracle, SHAPE, PerSampleNoise(range(8)))
        assert torch.allclose(a, b, atol=1e-5), steps


def test_dpm_solver_first_order_is_ddim():
    d = GaussianDiffusion()
    oracle = make_oracle(d)
    for spacing in ("uniform", "logsnr"):
        a = DDIMSampler(d, steps=15, spacing=spacing).sample(oracle, SHAPE, PerSampleNoise(range(8)))
        b = DPMSolverPPSampler(d, steps=15, order=1, spacing=spacing).sample(
            oracle, SHAPE, PerSampleNoise(range(8))
        )
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("ancestral", {"steps": 20}),
        ("ddim", {"steps": 10, "spacing": "quadratic"}),
        ("ddim", {"steps": 10, "eta": 1.0}),
        ("dpm_solver_pp_2m", {"steps": 8}),
        ("dpm_solver_pp_3m", {"steps": 12}),
    ],
)
@pytest.mark.parametrize("mean_type", ["x0", "mu"])
def test_samplers_agree_across_parameterisations(name, settings, mean_type):
    """The same oracle predicting eps, x0 or mu gives the same samples with every sampler (respaced too)."""
    d_eps = GaussianDiffusion(num_timesteps=200)
    d_other = GaussianDiffusion(num_timesteps=200, mean_type=mean_type)
    oracle = make_oracle(d_eps)
    ref = make_sampler(name, d_eps, **settings).sample(oracle, SHAPE, PerSampleNoise(range(6)))
    other = make_sampler(name, d_other, **settings).sample(
        oracle_as(mean_type, oracle, d_eps), SHAPE, PerSampleNoise(range(6))
    )
    assert torch.allclose(ref, other, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("ancestral", {}),
        ("ancestral", {"steps": 7}),
        ("ddim", {"steps": 7, "eta": 0.5}),
        ("dpm_solver_pp_3m", {"steps": 7}),
    ],
)
def test_per_sample_seeds_make_each_image_reproducible(name, settings):
    d = GaussianDiffusion(num_timesteps=50)
    net = TinyNet().eval()
    full = sample(net, d, SHAPE, seeds=range(10, 16), sampler=name, **settings)
    batched = sample(net, d, SHAPE, seeds=range(10, 16), sampler=name, batch_size=4, **settings)
    alone = sample(net, d, SHAPE, seeds=[13, 14, 15], sampler=name, **settings)
    assert full.shape == (6, *SHAPE)
    assert torch.allclose(full, batched, atol=1e-6)
    assert torch.allclose(full[3:], alone, atol=1e-6)
    assert not torch.allclose(full[0], full[1])


def test_sample_entry_point_defaults_and_errors():
    d = GaussianDiffusion(num_timesteps=50)
    net = TinyNet().eval()
    out = sample(net, d, SHAPE, num_samples=3, seed=7)
    assert torch.equal(out, sample(net, d, SHAPE, seeds=[7, 8, 9], sampler="ddim"))
    ready = DDIMSampler(d, steps=5)
    assert sample(net, d, SHAPE, 2, sampler=ready).shape == (2, *SHAPE)
    with pytest.raises(ConfigError, match="unknown sampler"):
        sample(net, d, SHAPE, 2, sampler="euler")
    with pytest.raises(ConfigError, match="num_samples or seeds"):
        sample(net, d, SHAPE)
    with pytest.raises(ConfigError, match="ready-made"):
        sample(net, d, SHAPE, 2, sampler=ready, steps=3)


def test_samplers_follow_the_protocol_and_count_network_calls():
    d = GaussianDiffusion(num_timesteps=100)
    for sampler in (
        AncestralSampler(d),
        AncestralSampler(d, steps=10),
        DDIMSampler(d, steps=10),
        DPMSolverPPSampler(d, steps=10, order=3),
    ):
        assert isinstance(sampler, Sampler)
        net = TinyNet().eval()
        sampler.sample(net, SHAPE, PerSampleNoise([0]))
        assert len(net.seen_t) == sampler.num_steps == len(sampler.timesteps)


def test_trajectories_record_original_timesteps():
    d = GaussianDiffusion(num_timesteps=100)
    net = TinyNet().eval()
    _, traj = AncestralSampler(d).progressive(net, SHAPE, PerSampleNoise([0, 1]), record_every=25)
    assert traj.timesteps == [75, 50, 25, 0]
    sampler = AncestralSampler(d, steps=11)
    _, traj = sampler.progressive(net, SHAPE, PerSampleNoise([0]), record_every=5)
    assert traj.timesteps == [sampler.timesteps[10], sampler.timesteps[5], 0]
    assert traj.pred_x0[0].shape == (1, *SHAPE)


def test_sampler_setting_errors():
    d = GaussianDiffusion(num_timesteps=100)
    with pytest.raises(ConfigError, match="eta"):
        DDIMSampler(d, eta=1.5)
    with pytest.raises(ConfigError, match="steps"):
        DDIMSampler(d, steps=101)
    with pytest.raises(ConfigError, match="spacing"):
        DDIMSampler(d, steps=10, spacing="cubic")
    with pytest.raises(ConfigError, match="order"):
        DPMSolverPPSampler(d, order=4)
    with pytest.raises(ConfigError, match="strictly increasing"):
        AncestralSampler(d, timesteps=[0, 5, 5])
    with pytest.raises(ConfigError, match="not on this sampler's chain"):
        DDIMSampler(d, steps=10).sample_from(TinyNet(), torch.zeros(1, *SHAPE), 50)
    learned = GaussianDiffusion(num_timesteps=100, var_type="learned")
    with pytest.raises(ConfigError, match="respaced"):
        AncestralSampler(learned, steps=10)
    AncestralSampler(learned, steps=100)  # the full chain is fine
