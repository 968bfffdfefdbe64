import itertools

import numpy as np
import pytest
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling.spacing import SPACINGS, chain_timesteps, make_timesteps


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 2, 5, 10, 20, 50, 100, 999])
def test_spacings_give_distinct_increasing_indices(spacing, steps):
    d = GaussianDiffusion()
    ts = make_timesteps(1000, steps, spacing, log_snr=d.log_snr)
    assert len(ts) == steps
    assert all(b > a for a, b in itertools.pairwise(ts))
    assert ts[0] >= 0 and ts[-1] <= 999
    if spacing != "leading":
        assert ts[-1] == 999
        assert steps == 1 or ts[0] == 0


def test_full_sequence_and_known_values():
    assert make_timesteps(1000, None) == list(range(1000))
    assert make_timesteps(1000, 1000, "quadratic") == list(range(1000))
    assert make_timesteps(1000, 4, "uniform") == [0, 333, 666, 999]
    assert make_timesteps(1000, 4, "leading") == [0, 250, 500, 750]
    q = make_timesteps(1000, 11, "quadratic")
    assert q[:3] == [0, 10, 40] and q[-1] == 999


def test_logsnr_spacing_is_uniform_in_lambda():
    d = GaussianDiffusion()
    ts = make_timesteps(1000, 20, "logsnr", log_snr=d.log_snr)
    abar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))  # the paper's linear schedule in numpy
    lam = torch.from_numpy(0.5 * np.log(abar / (1.0 - abar)))[ts]
    gaps = (lam[:-1] - lam[1:]).abs()
    assert gaps.max() / gaps.min() < 1.6
    assert torch.all(lam[:-1] > lam[1:])
    assert chain_timesteps(d, 20, "logsnr") == ts
    with pytest.raises(ConfigError, match="needs the schedule's log_snr"):
        make_timesteps(1000, 20, "logsnr")


def test_a_chain_is_its_explicit_timesteps_or_a_spacing():
    d = GaussianDiffusion(num_timesteps=100)
    assert chain_timesteps(d) == list(range(100))
    assert chain_timesteps(d, 4, "uniform") == make_timesteps(100, 4, "uniform") == [0, 33, 66, 99]
    assert chain_timesteps(d, 4, "uniform", timesteps=[2, 5]) == [2, 5]  # explicit ones win
    for bad in ([], [5, 5], [3, 100], [-1, 2]):
        with pytest.raises(ConfigError, match="timesteps"):
            chain_timesteps(d, timesteps=bad)
