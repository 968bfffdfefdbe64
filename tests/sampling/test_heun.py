"""EDM's Heun sampler (Karras et al. 2022) on a discrete DDPM model, checked on the exact Gaussian oracle.

For data N(m, s^2) the exact denoiser is D(x; sigma) = m + s^2 / (s^2 + sigma^2) (x - m) and the
probability-flow ODE dx/dsigma = (x - D) / sigma keeps (x - m) / sqrt(s^2 + sigma^2) constant, so the exact
solution between two sigmas is closed-form. References here use only these formulas and a numpy schedule.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import Tensor

from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling import DDIMSampler, HeunSampler, PerSampleNoise, Trajectory, make_sampler
from ddpm.sampling.noise import NoiseSource
from ddpm.sampling.spacing import karras_timesteps
from ddpm.testing import BatchNoise, GaussianOracle, exact_moments, sample_moments
from tests.sampling.helpers import make_oracle, oracle_as

T = 1000
LINEAR = GaussianDiffusion()


def numpy_sigmas() -> np.ndarray:
    """sigma_t = sqrt((1 - abar_t) / abar_t) of the paper's linear schedule, float64, with numpy."""
    abar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T, dtype=np.float64))
    return np.sqrt((1.0 - abar) / abar)


def exact_denoiser(oracle: GaussianOracle, x: Tensor, sigma: float) -> Tensor:
    """D(x; sigma) = m + s^2 / (s^2 + sigma^2) (x - m) of the oracle's Gaussian."""
    var = oracle.std**2
    return oracle.mean + var / (var + sigma**2) * (x - oracle.mean)


def probability_flow_state(oracle: GaussianOracle, x_top: Tensor, t_top: int, t: int) -> Tensor:
    """The exact PF-ODE solution at sigma_t from x_t at ``t_top``, in EDM scale (x_t / sqrt(abar_t))."""
    sigmas = numpy_sigmas()
    s_top, s_t = float(sigmas[t_top]), float(sigmas[t])
    x = x_top.double() * math.sqrt(1.0 + s_top**2)  # x_edm = x_t / sqrt(abar_t)
    var = oracle.std**2
    return oracle.mean + (x - oracle.mean) * ((var + s_t**2) / (var + s_top**2)).sqrt()


def probability_flow_x0(oracle: GaussianOracle, x_top: Tensor, t_top: int) -> Tensor:
    """What an exact ODE solver returns from x_t at ``t_top``: the exact solution at sigma_0, then the final
    step to sigma = 0, x_0 = D(x; sigma_0), which every sampler here takes."""
    return exact_denoiser(oracle, probability_flow_state(oracle, x_top, t_top, 0), float(numpy_sigmas()[0]))


class RecordingNoise(NoiseSource):
    """Standard normal draws from one generator, kept in ``draws`` (float64)."""

    def __init__(self, batch_size: int, seed: int = 0) -> None:
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.draws: list[Tensor] = []

    def randn(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
        z = torch.randn((self.batch_size, *shape), generator=self.generator, dtype=torch.float64)
        self.draws.append(z)
        return z.to(device=device, dtype=dtype)


def edm_reference(oracle: GaussianOracle, x_top: Tensor, sampler: HeunSampler, draws: list[Tensor]) -> Tensor:
    """EDM's ``edm_sampler`` loop (Algorithms 1-2) in float64 with the closed-form denoiser, on the sampler's
    levels; the churn sigma_hat is recomputed from EDM's gamma and rounded with numpy."""
    sigmas = numpy_sigmas()
    levels = [float(sigmas[t]) for t in reversed(sampler.timesteps)] + [0.0]
    s_churn, s_tmin, s_tmax = sampler.s_churn, sampler.s_tmin, sampler.s_tmax
    x = x_top.double() * math.sqrt(1.0 + levels[0] ** 2)
    draws = list(draws)
    for i, (t_cur, t_next) in enumerate(itertools.pairwise(levels)):
        gamma = min(s_churn / len(sampler.timesteps), math.sqrt(2) - 1) if s_tmin <= t_cur <= s_tmax else 0.0
        t_hat = float(sigmas[np.abs(sigmas - t_cur * (1 + gamma)).argmin()])
        if t_hat != t_cur:
            x = x + math.sqrt(t_hat**2 - t_cur**2) * sampler.s_noise * draws.pop(0)
        d_cur = (x - exact_denoiser(oracle, x, t_hat)) / t_hat
        x_next = x + (t_next - t_hat) * d_cur
        if i < len(levels) - 2:
            d_prime = (x_next - exact_denoiser(oracle, x_next, t_next)) / t_next
            x_next = x + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
        x = x_next
    assert not draws
    return x


def x_top(n: int = 64, seed: int = 0) -> Tensor:
    return torch.randn((n, 1, 4, 4), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def solve(sampler, oracle: GaussianOracle, x: Tensor, noise: NoiseSource | None = None) -> Tensor:
    return sampler.sample_from(oracle, x.clone(), sampler.timesteps[-1], noise)


def rms(a: Tensor, b: Tensor) -> float:
    return float(((a.double() - b.double()) ** 2).mean().sqrt())


# ---------------------------------------------------------------------- the sigma <-> t mapping
def test_sigmas_levels_and_denoiser_follow_the_sigma_t_mapping():
    sampler = HeunSampler(LINEAR, steps=12, clip_denoised=False, sigma_min=None, sigma_max=None)
    sigmas = numpy_sigmas()
    assert np.allclose(sampler.sigmas.numpy(), sigmas, rtol=1e-12)
    # EDM eq. 5 between the model's extreme sigmas, each rounded to the nearest discrete sigma
    rho, lo, hi = 7.0, sigmas[0], sigmas[-1]
    levels = (hi ** (1 / rho) + np.arange(12) / 11 * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    expected = sorted(int(np.abs(sigmas - s).argmin()) for s in levels)
    assert sampler.timesteps == expected and expected[0] == 0 and expected[-1] == T - 1
    assert len(set(expected)) == 12 and sampler.churn_timesteps == sampler.timesteps
    # D(x; sigma_t) from the network's eps at x_t = x / sqrt(1 + sigma_t^2) is the closed-form denoiser
    oracle = make_oracle(LINEAR)
    x = x_top(8) * 3
    for t in (0, 17, 500, T - 1):
        assert torch.allclose(
            sampler.denoise(oracle, x, t, None), exact_denoiser(oracle, x, sigmas[t]), atol=1e-12
        )


def test_karras_levels_collide_apart_clamp_and_validate():
    sigmas = torch.from_numpy(numpy_sigmas())
    many = karras_timesteps(sigmas, 400)  # far more levels than discrete sigmas near sigma_min
    assert len(set(many)) == 400 and many == sorted(many) and many[0] == 0 and many[-1] == T - 1
    assert karras_timesteps(sigmas, 1) == [T - 1]
    # EDM clamps its range to the network's: sigma_max = 80 lands inside, 1e6 on the top level
    ranged = karras_timesteps(sigmas, 10, sigma_range=(0.002, 80.0))
    assert ranged[0] == 0 and abs(float(sigmas[ranged[-1]]) - 80.0) < 1.0
    assert karras_timesteps(sigmas, 10, sigma_range=(None, 1e6)) == karras_timesteps(sigmas, 10)
    with pytest.raises(ConfigError, match="steps"):
        karras_timesteps(sigmas, 0)
    with pytest.raises(ConfigError, match="sigma_min"):
        karras_timesteps(sigmas, 10, sigma_range=(5.0, 1.0))
    uniform = HeunSampler(LINEAR, steps=25, spacing="uniform")
    assert uniform.timesteps == DDIMSampler(LINEAR, steps=25).timesteps and uniform.num_steps == 49


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_the_default_range_is_edms_and_keeps_the_data_variance_on_both_schedules(schedule):
    """EDM clamps sigma_max = 80 to the network's range. The cosine schedule's clipped last betas make its
    largest sigma ~2e4 (642 at t=998): starting there puts 9 of 18 levels above 80 and triples the output
    variance on the exact oracle; the default (EDM's range) stays within ~16 % of the data's on both."""
    d = GaussianDiffusion(schedule)
    oracle = make_oracle(d)
    default = HeunSampler(d, clip_denoised=False)
    edm = HeunSampler(d, steps=18, rho=7.0, sigma_min=0.002, sigma_max=80.0, clip_denoised=False)
    assert default.timesteps == edm.timesteps and abs(float(default.sigmas[default.timesteps[-1]]) - 80) < 2
    _, var = exact_moments(default, oracle)
    assert ((var / oracle.std**2 - 1).abs() < 0.2).all()
    _, own_var = exact_moments(HeunSampler(d, clip_denoised=False, sigma_min=None, sigma_max=None), oracle)
    if schedule == "cosine":
        assert float((own_var / oracle.std**2).max()) > 2.5  # the model's own range: why EDM's is the default


# ---------------------------------------------------------------------- the algorithm itself
@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({}, id="algorithm_1"),
        pytest.param({"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003}, id="algorithm_2"),
        pytest.param({"s_churn": 5.0}, id="algorithm_2_everywhere"),
    ],
)
def test_heun_is_edms_algorithm_with_the_exact_denoiser(settings):
    sampler = HeunSampler(LINEAR, steps=8, clip_denoised=False, **settings)
    oracle = make_oracle(LINEAR)
    x = x_top()
    noise = RecordingNoise(x.shape[0])
    out = solve(sampler, oracle, x, noise)
    churned = sum(a != b for a, b in zip(sampler.timesteps, sampler.churn_timesteps))
    assert len(noise.draws) == churned and (churned > 0) == bool(settings)
    assert torch.allclose(out, edm_reference(oracle, x, sampler, noise.draws), rtol=1e-9, atol=1e-12)


def test_network_calls_conditioning_and_the_timesteps_the_network_sees():
    seen: list[tuple[list[int], list[int]]] = []
    oracle = make_oracle(LINEAR)

    def model(x_t: Tensor, t: Tensor, *, probe: Tensor) -> Tensor:
        seen.append((t.tolist(), probe.tolist()))
        return oracle(x_t, t)

    for settings in ({}, {"s_churn": 40.0}):
        seen.clear()
        sampler = HeunSampler(LINEAR, steps=9, **settings)
        out = sampler.sample(
            model, oracle.shape, PerSampleNoise([3, 4]), cond={"probe": torch.tensor([7, 8])}
        )
        assert out.shape == (2, *oracle.shape) and len(seen) == sampler.num_steps == 17
        assert all(probe == [7, 8] for _, probe in seen)
        visited = {ts[0] for ts, _ in seen}  # D at each level's sigma_hat, D' at the level below it
        assert visited == set(sampler.churn_timesteps) | set(sampler.timesteps[:-1])


def test_sample_from_mid_chain_and_the_trajectory():
    sampler = HeunSampler(LINEAR, steps=40, clip_denoised=False)
    oracle = make_oracle(LINEAR)
    t_mid = sampler.timesteps[20]
    x = x_top(16)
    out = sampler.sample_from(oracle, x, t_mid)
    assert rms(out, probability_flow_x0(oracle, x, t_mid)) < 5e-3
    tail = HeunSampler(LINEAR, timesteps=sampler.timesteps[:21], clip_denoised=False)
    assert torch.equal(out, solve(tail, oracle, x))
    with pytest.raises(ConfigError, match="not on this sampler's chain"):
        sampler.sample_from(oracle, x, t_mid + 1)
    trajectory = Trajectory()
    out = sampler.sample_from(oracle, x, sampler.timesteps[-1], record_every=13, trajectory=trajectory)
    assert trajectory.timesteps == [sampler.timesteps[i] for i in (39, 26, 13, 0)]
    assert torch.equal(trajectory.x_t[-1], out)
    # the state after the step from level i is x_t (DDPM scale) at level i - 1: the ODE's, to its error
    sigmas = numpy_sigmas()
    for k, i in enumerate((39, 26, 13)):
        t_next = sampler.timesteps[i - 1]
        exact = probability_flow_state(oracle, x, T - 1, t_next) / math.sqrt(1 + sigmas[t_next] ** 2)
        assert rms(trajectory.x_t[k], exact) < 0.005 * float(exact.std())


# ---------------------------------------------------------------------- accuracy on the oracle
def test_error_falls_at_second_order_and_beats_ddim_at_equal_network_calls():
    """Against the exact ODE solution: doubling the levels (halving the steps) cuts Heun's error ~4x and
    DDIM's (Euler, first order) ~2x; at 39 and 79 calls Heun is at least twice as accurate as DDIM."""
    oracle = make_oracle(LINEAR)
    x = x_top(256)
    reference = probability_flow_x0(oracle, x, T - 1)
    heun = {
        n: rms(solve(HeunSampler(LINEAR, steps=n, clip_denoised=False), oracle, x), reference)
        for n in (10, 20, 40)
    }
    ddim = {
        n: rms(solve(DDIMSampler(LINEAR, steps=2 * n - 1, clip_denoised=False), oracle, x), reference)
        for n in (10, 20, 40)
    }
    for n in (10, 20):
        assert 3.2 < heun[n] / heun[2 * n] < 6.0, heun
        assert 1.6 < ddim[n] / ddim[2 * n] < 2.5, ddim
    assert heun[20] < ddim[20] / 2 and heun[40] < ddim[40] / 4, (heun, ddim)


def test_churn_matches_the_target_distribution():
    """Algorithm 2 on the oracle: exact output moments approach N(m, s^2) as the levels grow (churn adds
    fresh noise, which washes out the N(0, I) start's prior mismatch in the mean); a Monte-Carlo run with
    the sampler's own noise passes the oracle tests' Z = 4 check."""
    oracle = make_oracle(LINEAR)
    settings = {"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0, "clip_denoised": False}
    fds = {}
    for n in (20, 160):
        mean, var = exact_moments(HeunSampler(LINEAR, steps=n, **settings), oracle)
        fds[n] = oracle.frechet_distance(mean, var)
    assert fds[160] < 1e-4 < 5e-3 < fds[20], fds  # the check fails with too few levels
    assert torch.allclose(mean, oracle.mean, rtol=0, atol=1e-9)
    assert ((var / oracle.std**2 - 1).abs() < 0.02).all()
    n = 2000
    samples = HeunSampler(LINEAR, steps=160, **settings).sample(
        oracle, oracle.shape, BatchNoise(n, torch.Generator().manual_seed(0))
    )
    mean, var = sample_moments(samples)
    assert ((mean - oracle.mean) / (oracle.std / math.sqrt(n))).abs().max() < 4
    assert ((var / oracle.std**2 - 1) / math.sqrt(2 / (n - 1))).abs().max() < 4


@pytest.mark.parametrize("mean_type", ["x0", "mu"])
@pytest.mark.parametrize("var_type", ["fixed_large", "learned_range"])
def test_heun_gives_the_same_samples_for_every_parameterisation(mean_type, var_type):
    """x0 / mu outputs (and a learned variance's extra half, ignored) give the eps oracle's samples."""
    d = GaussianDiffusion(mean_type=mean_type, var_type=var_type)
    oracle = make_oracle(LINEAR)
    predict = oracle_as(mean_type, oracle, d)

    def model(x_t: Tensor, t: Tensor) -> Tensor:
        out = predict(x_t, t)
        return torch.cat([out, torch.zeros_like(out)], 1) if var_type == "learned_range" else out

    x = x_top(16).float()
    from_eps = solve(HeunSampler(LINEAR, steps=10), oracle, x)
    assert torch.allclose(solve(HeunSampler(d, steps=10), model, x), from_eps, rtol=1e-4, atol=1e-5)


def test_bad_settings_raise_config_errors():
    with pytest.raises(ConfigError, match="spacing"):
        HeunSampler(LINEAR, spacing="edm")
    with pytest.raises(ConfigError, match="s_churn"):
        HeunSampler(LINEAR, s_churn=-1.0)
    with pytest.raises(ConfigError, match="noise source"):
        churn = HeunSampler(LINEAR, steps=5, s_churn=40.0)
        churn.sample_from(make_oracle(LINEAR), x_top(2), churn.timesteps[-1])
    assert isinstance(make_sampler("heun-churn", LINEAR), HeunSampler)
