"""Min-SNR-gamma loss weighting (Hang et al. 2023) for eps, x0 and v targets.

The weights are checked against their closed form (SNR from a numpy float64 schedule), and the weighted
loss of each target against an independent float64 computation: a network that predicts a known x0_hat,
expressed as eps, x0 or v, must get the loss min(SNR, gamma) * ||x0_hat - x0||^2 whichever target it
regresses.
"""

from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch
from torch import Tensor

from ddpm.diffusion import GaussianDiffusion
from ddpm.diffusion.likelihood import mean_flat
from ddpm.diffusion.losses import SimpleLoss, min_snr_weight
from ddpm.errors import ConfigError
from tests.helpers import TINY, compose_train
from tests.sampling.helpers import TinyNet

T = 1000
GAMMA = 5.0


def numpy_snr(t: Tensor) -> Tensor:
    """SNR(t) = abar_t / (1 - abar_t) of the paper's linear schedule, float64, computed with numpy."""
    abar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T, dtype=np.float64))
    return torch.from_numpy(abar / (1.0 - abar))[t]


@pytest.mark.parametrize("mean_type", ["eps", "x0", "v"])
def test_min_snr_weights_match_their_closed_form(mean_type):
    t = torch.arange(T)
    snr = numpy_snr(t)
    clipped = torch.minimum(snr, torch.full_like(snr, GAMMA))
    expected = {"x0": clipped, "eps": clipped / snr, "v": clipped / (snr + 1)}[mean_type]
    weight = min_snr_weight(GaussianDiffusion(mean_type=mean_type), t, GAMMA)
    assert weight.dtype == torch.float64
    assert torch.allclose(weight, expected, rtol=1e-12, atol=0)
    # gamma splits the chain: SNR > gamma at small t (weights of eps 5/SNR, x0 5, v 5/(SNR+1)), below it
    # at large t (eps 1, x0 SNR, v SNR/(SNR+1))
    low, high = snr > GAMMA, snr <= GAMMA
    assert low.any() and high.any()
    if mean_type == "eps":
        assert torch.allclose(weight[high], torch.ones(int(high.sum()), dtype=torch.float64))
    if mean_type == "x0":
        assert torch.allclose(weight[low], torch.full((int(low.sum()),), GAMMA, dtype=torch.float64))


class PredictsX0:
    """A 'network' whose x0 prediction is a fixed nonlinear function of (x_t, t), returned as the
    diffusion's target (eps, x0 or v, converted in float64 here); it records x_t and t."""

    def __init__(self, mean_type: str) -> None:
        self.mean_type = mean_type
        self.net = TinyNet()
        self.calls: list[tuple[Tensor, Tensor]] = []

    def x0_hat(self, x_t: Tensor, t: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.tanh(self.net(x_t.float(), t)).double()

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        self.calls.append((x_t, t))
        x0_hat = self.x0_hat(x_t, t)
        snr = numpy_snr(t).view(-1, 1, 1, 1)
        a, s = (snr / (1 + snr)).sqrt(), (1 / (1 + snr)).sqrt()  # sqrt(abar), sqrt(1 - abar)
        eps_hat = (x_t.double() - a * x0_hat) / s
        return {"x0": x0_hat, "eps": eps_hat, "v": a * eps_hat - s * x0_hat}[self.mean_type]


@pytest.mark.parametrize("mean_type", ["eps", "x0", "v"])
def test_the_weighted_loss_is_min_snr_gamma_times_the_x0_error(mean_type):
    d = GaussianDiffusion(mean_type=mean_type)
    model = PredictsX0(mean_type)
    x0 = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    loss = SimpleLoss(weighting="min_snr", gamma=GAMMA)(model, d, x0, torch.Generator().manual_seed(1))
    ((x_t, t),) = model.calls
    snr = numpy_snr(t)
    x0_mse = mean_flat((model.x0_hat(x_t, t) - x0) ** 2)
    expected = torch.minimum(snr, torch.full_like(snr, GAMMA)) * x0_mse
    assert (snr > GAMMA).any() and (snr < GAMMA).any()
    # eps_hat and v_hat pass through float32 (noised_prediction): 3e-6 relative error at most
    assert torch.allclose(loss.double(), expected, rtol=1e-4, atol=0)


def test_the_unweighted_default_is_l_simple_bit_for_bit():
    d = GaussianDiffusion(num_timesteps=50)
    net = TinyNet()
    x0 = torch.rand(8, 1, 4, 4) * 2 - 1
    gen = torch.Generator().manual_seed(3)
    t = torch.randint(0, 50, (8,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    expected = mean_flat((noise - net(d.q_sample(x0, t, noise), t)) ** 2)
    for loss_fn in (SimpleLoss(), SimpleLoss(weighting="none", gamma=1.0)):
        assert torch.equal(loss_fn(net, d, x0, torch.Generator().manual_seed(3)), expected)


def test_bad_weighting_settings_raise_one_line_config_errors():
    with pytest.raises(ConfigError, match="none, min_snr"):
        SimpleLoss(weighting="snr")
    with pytest.raises(ConfigError, match="gamma"):
        SimpleLoss(weighting="min_snr", gamma=0.0)
    d = GaussianDiffusion(num_timesteps=20, mean_type="mu")
    with pytest.raises(ConfigError, match="eps, x0 or v") as info:
        SimpleLoss(weighting="min_snr")(
            TinyNet(), d, torch.zeros(2, 1, 4, 4), torch.Generator().manual_seed(0)
        )
    assert "\n" not in str(info.value)


def test_min_snr_module_config_with_v_prediction_builds_and_trains(tmp_path):
    cfg = compose_train([*TINY, "module=ddpm_min_snr", "diffusion=linear_v"], tmp_path)
    module = hydra.utils.instantiate(cfg.module)
    assert module.diffusion.mean_type == "v"
    assert (module.loss_fn.weighting, module.loss_fn.gamma) == ("min_snr", 5.0)
    x0 = torch.rand(4, 1, 16, 16) * 2 - 1
    loss = module.loss_fn(module.net, module.diffusion, x0, torch.Generator().manual_seed(0)).mean()
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in module.net.parameters())
