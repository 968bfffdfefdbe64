"""torch.compile paths equal the eager ones: the training loss and gradients of ``compile=true``, and
sampling through :func:`ddpm.utils.compile.compile_for_sampling` (DDIM and DPM-Solver++'s history)."""

import pytest
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.lightning import DDPMLitModule
from ddpm.sampling import sample
from ddpm.utils.compile import CompiledDenoiser, compile_for_sampling, default_mode
from tests.helpers import tiny_unet


def test_sampling_compile_mode_by_device_and_bad_modes_refused():
    net = tiny_unet(channels=1)
    assert default_mode(net) == "default"  # CUDA graphs only for CUDA weights
    model = compile_for_sampling(net)
    assert isinstance(model, CompiledDenoiser) and model.net is net and not model.cudagraphs
    assert compile_for_sampling(net, "reduce-overhead").cudagraphs
    with pytest.raises(ValueError, match="unknown torch.compile mode"):
        compile_for_sampling(net, "fastest")


@pytest.mark.slow
def test_compiled_training_loss_and_gradients_equal_eager():
    diffusion = GaussianDiffusion(num_timesteps=100)
    eager = DDPMLitModule(tiny_unet(channels=1), diffusion)
    compiled = DDPMLitModule(tiny_unet(channels=1), diffusion, compile=True)
    compiled.load_state_dict(eager.state_dict())
    x0 = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for step in range(2):  # the second call runs the cached graph
        losses = []
        for module in (eager, compiled):
            module.net.zero_grad()
            loss = module.loss_fn(module.net, diffusion, x0, torch.Generator().manual_seed(step)).mean()
            loss.backward()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
        for p, q in zip(eager.net.parameters(), compiled.net.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(("sampler", "steps"), [("ddim", 6), ("dpm_solver_pp_2m", 6)])
def test_compiled_sampling_equals_eager(sampler, steps):
    net = tiny_unet(channels=1).eval()
    diffusion = GaussianDiffusion(num_timesteps=100)
    kwargs = {"num_samples": 5, "sampler": sampler, "steps": steps}
    eager = sample(net, diffusion, (1, 8, 8), **kwargs)
    compiled = sample(compile_for_sampling(net), diffusion, (1, 8, 8), **kwargs)
    assert (eager - sample(net, diffusion, (1, 8, 8), seed=1, **kwargs)).abs().max() > 0.1
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
