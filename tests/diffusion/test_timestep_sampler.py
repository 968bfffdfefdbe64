"""Importance sampling of t (improved DDPM): history buffers, warm-up, probabilities, unbiased weights."""

from __future__ import annotations

import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.diffusion.losses import VLBLoss
from ddpm.diffusion.timestep_sampler import LossAwareTimestepSampler, UniformTimestepSampler
from ddpm.lightning.module import DDPMLitModule
from tests.sampling.helpers import TinyNet


def filled(T: int = 5, k: int = 3) -> LossAwareTimestepSampler:
    s = LossAwareTimestepSampler(T, history_per_term=k, uniform_prob=0.0)
    for _ in range(k):
        s.update(torch.arange(T), torch.arange(1, T + 1, dtype=torch.float64))
    return s


def test_uniform_until_every_term_has_its_history():
    s = LossAwareTimestepSampler(4, history_per_term=2)
    assert not s.warmed_up
    s.update(torch.tensor([0, 1, 2, 3, 0, 1, 2]), torch.ones(7))
    assert not s.warmed_up
    assert torch.allclose(s.probabilities(), torch.full((4,), 0.25, dtype=torch.float64))
    _, w = s.sample(100, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert torch.equal(w, torch.ones(100))
    s.update(torch.tensor([3]), torch.ones(1))
    assert s.warmed_up


def test_probabilities_follow_the_second_moment_and_the_history_rolls():
    s = filled()
    p = s.probabilities()
    expected = torch.arange(1, 6, dtype=torch.float64)
    assert torch.allclose(p, expected / expected.sum())
    s.update(torch.tensor([0]), torch.tensor([100.0]))  # drops the oldest value of t=0
    assert s.loss_history[0].tolist() == [1.0, 1.0, 100.0]
    assert int(s.loss_counts[0]) == 4
    mixed = LossAwareTimestepSampler(5, history_per_term=3, uniform_prob=0.5)
    mixed.load_state_dict(filled().state_dict())
    assert torch.allclose(mixed.probabilities(), 0.5 * expected / expected.sum() + 0.1)


def test_importance_weights_keep_the_estimate_unbiased():
    s = filled()
    p = s.probabilities()
    losses = torch.arange(1, 6, dtype=torch.float64) ** 2
    # E_{t~p}[L_t / (T p_t)] = mean_t L_t, exactly ...
    assert torch.allclose((p * losses / (5 * p)).sum(), losses.mean())
    # ... and in the weights the sampler returns
    t, w = s.sample(200000, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert torch.allclose(w.double(), 1 / (5 * p[t]))
    assert abs((w.double() * losses[t]).mean().item() / losses.mean().item() - 1) < 0.01
    counts = torch.bincount(t, minlength=5).double() / len(t)
    assert torch.allclose(counts, p, atol=0.005)


def test_history_is_a_buffer_saved_with_the_module():
    d = GaussianDiffusion(num_timesteps=10)
    module = DDPMLitModule(TinyNet(), d, loss=VLBLoss(LossAwareTimestepSampler(10, history_per_term=2)))
    module.train()
    for step in range(3):
        module.loss_fn(module.net, d, torch.rand(8, 1, 4, 4) * 2 - 1, torch.Generator().manual_seed(step))
    state = module.state_dict()
    assert "loss_fn.timestep_sampler.loss_history" in state
    assert int(state["loss_fn.timestep_sampler.loss_counts"].sum()) == 24
    restored = DDPMLitModule(TinyNet(), d, loss=VLBLoss(LossAwareTimestepSampler(10, history_per_term=2)))
    restored.load_state_dict(state)
    assert torch.equal(
        restored.loss_fn.timestep_sampler.loss_history, module.loss_fn.timestep_sampler.loss_history
    )
    # evaluation (validation) neither updates the history nor importance-samples
    module.eval()
    module.loss_fn(module.net, d, torch.rand(8, 1, 4, 4), torch.Generator().manual_seed(9))
    assert int(module.loss_fn.timestep_sampler.loss_counts.sum()) == 24


def test_uniform_sampler_draws_the_same_stream_as_the_default():
    from ddpm.diffusion.timestep_sampler import sample_timesteps

    t, w = UniformTimestepSampler(100).sample(16, torch.device("cpu"), torch.Generator().manual_seed(3))
    assert torch.equal(t, sample_timesteps(16, 100, torch.device("cpu"), torch.Generator().manual_seed(3)))
    assert torch.equal(w, torch.ones(16))


def test_every_loss_draws_t_as_the_uniform_sampler_does_and_consumes_the_generator_alike():
    from ddpm.diffusion.losses import HybridLoss, SimpleLoss

    d, x0, seen = GaussianDiffusion(num_timesteps=100), torch.rand(16, 1, 4, 4) * 2 - 1, []

    def model(x_t, t):
        seen.append(t)
        return torch.zeros_like(x_t)

    for loss in (SimpleLoss(), VLBLoss(), HybridLoss(), VLBLoss(UniformTimestepSampler(100)).eval()):
        generator = torch.Generator().manual_seed(3)
        loss(model, d, x0, generator)
        reference = torch.Generator().manual_seed(3)
        t, _ = UniformTimestepSampler(100).sample(16, torch.device("cpu"), reference)
        torch.randn(x0.shape, generator=reference)  # then eps (eq. 4)
        assert torch.equal(seen[-1], t), loss
        assert torch.equal(generator.get_state(), reference.get_state()), loss
