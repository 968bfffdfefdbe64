"""The one sampling loop (iter_samples, sample): batches, per-seed images, progress, eval mode, cond."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling import (
    AncestralSampler,
    DDIMSampler,
    PerSampleNoise,
    center_mask,
    inpaint_replacement,
    iter_samples,
    loop,
    make_sampler,
    sample,
    sampler_names,
)
from tests.sampling.helpers import TinyNet

SHAPE = (1, 4, 4)
D = GaussianDiffusion(num_timesteps=50)
FAST = {
    "ancestral": {"steps": 6},
    "ancestral_respaced": {"steps": 6},
    "ddim": {"steps": 6, "eta": 0.5},
    "ddim_quadratic": {"steps": 6},
    "dpm_solver_pp_2m": {"steps": 6},
    "dpm_solver_pp_3m": {"steps": 6},
    "heun": {"steps": 4},
    "heun_churn": {"steps": 4},
}


class ProbeNet(TinyNet):
    """TinyNet that requires a per-image keyword ``probe`` [B] and records it (and its mode) on every call."""

    def __init__(self) -> None:
        super().__init__()
        self.probes: list[list[int]] = []
        self.modes: list[bool] = []

    def forward(self, x: Tensor, t: Tensor, probe: Tensor | None = None) -> Tensor:
        assert probe is not None, "the conditioning did not reach the model"
        assert probe.shape == (x.shape[0],) and probe.device == x.device
        self.probes.append(probe.tolist())
        self.modes.append(self.training)
        return super().forward(x, t) + 1e-3 * probe.to(x.dtype).view(-1, 1, 1, 1)


def test_iter_samples_yields_consecutive_batches_of_per_seed_images():
    net = TinyNet().eval()
    sampler = make_sampler("ddim", D, steps=5, eta=1.0)
    seeds = [5, 3, 9, 1, 2]
    batches = list(iter_samples(net, sampler, SHAPE, seeds, batch_size=2))
    assert [b for b, _ in batches] == [[5, 3], [9, 1], [2]]
    images = torch.cat([x for _, x in batches])
    assert images.dtype == torch.float32 and images.device.type == "cpu" and images.shape == (5, *SHAPE)
    alone = torch.cat([sampler.sample(net, SHAPE, PerSampleNoise([s])) for s in seeds])
    assert torch.allclose(images, alone, atol=1e-6)
    assert torch.equal(images, sample(net, D, SHAPE, seeds=seeds, sampler=sampler, batch_size=2))
    assert list(iter_samples(net, sampler, SHAPE, [], batch_size=2)) == []
    with pytest.raises(ConfigError, match="batch_size"):
        next(iter_samples(net, sampler, SHAPE, seeds, batch_size=0))
    with pytest.raises(ConfigError, match="rows"):
        next(iter_samples(net, sampler, SHAPE, seeds, batch_size=2, cond={"probe": torch.arange(4)}))


def test_one_progress_bar_counts_every_network_call(monkeypatch):
    bars, make_bar = [], loop.progress_bar
    monkeypatch.setattr(loop, "progress_bar", lambda **kwargs: bars.append(make_bar(**kwargs)) or bars[-1])
    sampler = AncestralSampler(D, steps=7)
    for _ in iter_samples(TinyNet().eval(), sampler, SHAPE, range(5), batch_size=2, progress=True):
        pass
    (bar,) = bars
    assert bar.total == bar.n == 5 * sampler.num_steps
    assert "images 5/5" in bar.postfix


def test_the_model_samples_in_eval_mode_and_gets_its_mode_back():
    net = ProbeNet().train()
    sampler = make_sampler("ddim", D, steps=3)
    cond = {"probe": torch.arange(4)}
    out = sample(net, D, SHAPE, seeds=range(4), sampler=sampler, batch_size=3, cond=cond)
    assert out.shape == (4, *SHAPE)
    assert net.modes and not any(net.modes)
    assert net.training


@pytest.mark.parametrize("name", sampler_names())
def test_conditioning_reaches_the_model_batch_by_batch(name):
    """cond is sliced per batch (aligned with the seeds) and passed to every network call of every sampler."""
    net = ProbeNet().eval()
    sampler = make_sampler(name, D, **FAST[name])
    seeds = list(range(100, 105))
    probe = torch.tensor(seeds)
    seen = 0
    for batch, images in iter_samples(net, sampler, SHAPE, seeds, batch_size=2, cond={"probe": probe}):
        calls = net.probes[seen:]
        assert len(calls) == sampler.num_steps
        assert all(p == batch for p in calls), (batch, calls)
        assert images.shape[0] == len(batch)
        seen = len(net.probes)
    net.probes.clear()
    sample(net, D, SHAPE, seeds=seeds, sampler=sampler, batch_size=3, cond={"probe": probe})
    assert net.probes == [seeds[:3]] * sampler.num_steps + [seeds[3:]] * sampler.num_steps


def test_conditioning_reaches_encode_progressive_and_inpainting():
    net = ProbeNet().eval()
    x0 = torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cond = {"probe": torch.tensor([7, 8, 9])}
    ddim = DDIMSampler(D, steps=6)
    latent = ddim.encode(net, x0, cond=cond)
    assert latent.shape == x0.shape and net.probes == [[7, 8, 9]] * ddim.num_steps
    net.probes.clear()
    ancestral = AncestralSampler(D, steps=5)
    _, traj = ancestral.progressive(net, SHAPE, PerSampleNoise([0, 1, 2]), record_every=2, cond=cond)
    assert traj.timesteps and net.probes == [[7, 8, 9]] * ancestral.num_steps
    net.probes.clear()
    filled = inpaint_replacement(net, ancestral, x0, center_mask(SHAPE), cond=cond)
    assert filled.shape == x0.shape and net.probes == [[7, 8, 9]] * ancestral.num_steps
