"""Schedules and derived coefficients against an independent float64 (NumPy, loop-based) computation."""

import math

import numpy as np
import pytest
import torch

from ddpm.diffusion import GaussianDiffusion, make_betas
from ddpm.errors import ConfigError


def reference_coefficients(betas: np.ndarray) -> dict[str, np.ndarray]:
    """The paper's formulas, written out with explicit loops in float64."""
    T = len(betas)
    abar = np.empty(T)
    prod = 1.0
    for i in range(T):
        prod *= 1.0 - betas[i]
        abar[i] = prod
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    post_var = np.array([betas[i] * (1 - abar_prev[i]) / (1 - abar[i]) for i in range(T)])
    return {
        "alphas_cumprod": abar,
        "posterior_variance": post_var,
        "posterior_mean_coef1": np.array(
            [math.sqrt(abar_prev[i]) * betas[i] / (1 - abar[i]) for i in range(T)]
        ),
        "posterior_mean_coef2": np.array(
            [math.sqrt(1 - betas[i]) * (1 - abar_prev[i]) / (1 - abar[i]) for i in range(T)]
        ),
        "posterior_log_variance_clipped": np.log(np.concatenate([[post_var[1]], post_var[1:]])),
        "fixed_large_variance": np.concatenate([[post_var[1]], betas[1:]]),
        # the noise levels: SNR, lambda = log(alpha / sigma) (DPM-Solver), EDM's sigma
        "snr": np.array([abar[i] / (1 - abar[i]) for i in range(T)]),
        "log_snr": np.array([math.log(math.sqrt(abar[i]) / math.sqrt(1 - abar[i])) for i in range(T)]),
        "sigmas": np.array([math.sqrt(1 - abar[i]) / math.sqrt(abar[i]) for i in range(T)]),
    }


def test_linear_schedule_is_the_papers():
    betas = make_betas("linear", 1000)
    assert betas.dtype == torch.float64
    assert betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(1e-4, abs=0)
    assert betas[-1].item() == pytest.approx(0.02, abs=1e-18)
    np.testing.assert_allclose(np.diff(betas.numpy()), (0.02 - 1e-4) / 999, rtol=1e-9)


def test_known_values_of_the_linear_schedule():
    d = GaussianDiffusion()
    # abar_T for the paper's schedule is about 4.04e-5 (signal almost destroyed at t = T).
    assert d.alphas_cumprod[-1].item() == pytest.approx(4.0358e-05, rel=1e-3)
    assert d.alphas_cumprod[0].item() == pytest.approx(1 - 1e-4)


@pytest.mark.parametrize("schedule", ["linear", "quadratic", "cosine"])
def test_derived_buffers_match_independent_float64(schedule):
    d = GaussianDiffusion(schedule=schedule, num_timesteps=200)
    ref = reference_coefficients(d.betas.numpy())
    for name, expected in ref.items():
        got = getattr(d, name)
        assert got.dtype == torch.float64, name
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-15, err_msg=name)


def test_quadratic_and_cosine_definitions():
    T = 50
    quad = make_betas("quadratic", T, 1e-4, 0.02).numpy()
    np.testing.assert_allclose(np.sqrt(quad), np.linspace(0.01, math.sqrt(0.02), T), rtol=1e-12)
    cos = make_betas("cosine", T).numpy()
    f = [math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(T + 1)]
    expected = [min(1 - f[t + 1] / f[t], 0.999) for t in range(T)]
    np.testing.assert_allclose(cos, expected, rtol=1e-12)


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown beta schedule 'foo'.*linear"):
        make_betas("foo")
    with pytest.raises(ConfigError, match="unknown var_type"):
        GaussianDiffusion(var_type="fixed_medium")


def test_schedule_buffers_are_not_saved_in_state_dict():
    assert GaussianDiffusion().state_dict() == {}
