import itertools

import pytest
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.sampling.spacing import SPACINGS, log_snr, make_timesteps


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 2, 5, 10, 20, 50, 100, 999])
def test_spacings_give_distinct_increasing_indices(spacing, steps):
    d = GaussianDiffusion()
    ts = make_timesteps(1000, steps, spacing, d.alphas_cumprod)
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
    ts = make_timesteps(1000, 20, "logsnr", d.alphas_cumprod)
    lam = log_snr(d.alphas_cumprod[ts])
    gaps = (lam[:-1] - lam[1:]).abs()
    assert gaps.max() / gaps.min() < 1.6
    assert torch.all(lam[:-1] > lam[1:])
