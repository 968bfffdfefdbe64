"""A new sampler is one class and one yaml: :class:`EulerSampler` below and ``euler.yaml`` written into a
temporary configs directory, found by ``make_sampler`` and by Hydra alike, and drawing through the
sampling loop and guidance untouched.

The toy: Euler's method on EDM's probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma in the scaled
state x = x_t / sqrt(abar_t), sigma_t = sqrt((1 - abar_t) / abar_t). One Euler step from t to s is
x_s / sqrt(abar_s) = x_t / sqrt(abar_t) + (sigma_s - sigma_t) eps_hat, which is deterministic DDIM's
eq. 12 rewritten (Song et al. 2021, eq. 14; Karras et al. 2022, Sec. 3): both must agree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch import Tensor

from ddpm.diffusion import GaussianDiffusion
from ddpm.diffusion.denoiser import Cond, Model
from ddpm.errors import ConfigError
from ddpm.sampling import DDIMSampler, PerSampleNoise, make_sampler, sample, sampler_names
from ddpm.sampling.base import ChainSampler, cpu64
from ddpm.sampling.noise import NoiseSource
from ddpm.sampling.spacing import chain_timesteps
from ddpm.testing.oracle import ClassConditionalOracle
from tests.sampling.helpers import make_oracle

D = GaussianDiffusion(num_timesteps=200)
SHAPE = (1, 4, 4)


class EulerSampler(ChainSampler):
    """Euler's method on the probability-flow ODE in EDM's sigma (``steps`` network calls)."""

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        steps: int | None = 10,
        spacing: str = "uniform",
        timesteps: Sequence[int] | None = None,
        clip_denoised: bool = True,
    ) -> None:
        self.diffusion, self.clip_denoised = diffusion, clip_denoised
        self.timesteps = chain_timesteps(diffusion, steps, spacing, timesteps)
        self._sigma, self._sqrt_abar = cpu64(diffusion.sigmas), cpu64(diffusion.sqrt_alphas_cumprod)

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def chain(
        self, model: Model, x_t: Tensor, start: int, noise: NoiseSource | None, cond: Cond | None
    ) -> Iterator[tuple[int, Tensor, Tensor]]:
        x = x_t / float(self._sqrt_abar[self.timesteps[start]])
        for i in range(start, -1, -1):
            t = self.timesteps[i]
            x0_hat, eps_hat = self.predict(model, x * float(self._sqrt_abar[t]), t, cond=cond)
            x = x0_hat if i == 0 else x + float(self._sigma[self.timesteps[i - 1]] - self._sigma[t]) * eps_hat
            yield i, x, x0_hat  # x: EDM's scaled state (a trajectory would want x_t: override state())


EULER_YAML = f"""# Euler's method on the probability-flow ODE (a toy sampler of the tests)
_target_: {__name__}.EulerSampler
_partial_: true
steps: 10
spacing: uniform
clip_denoised: true
"""
FINE_YAML = """defaults:
  - euler
  - _self_
steps: 40
"""


@pytest.fixture
def configs(tmp_path):
    """A configs directory whose sampler group holds the toy's yaml (and a variant built on it)."""
    (tmp_path / "sampler").mkdir()
    (tmp_path / "sampler" / "euler.yaml").write_text(EULER_YAML)
    (tmp_path / "sampler" / "euler_fine.yaml").write_text(FINE_YAML)
    return tmp_path


def test_make_sampler_finds_the_new_class_by_its_yaml_with_the_yamls_defaults(configs):
    assert sampler_names(configs) == ["euler", "euler_fine"]
    sampler = make_sampler("euler", D, configs=configs)
    assert isinstance(sampler, EulerSampler) and sampler.num_steps == 10 and sampler.clip_denoised
    assert make_sampler("euler-fine", D, configs=configs).num_steps == 40  # over euler.yaml's settings
    assert make_sampler("euler", D, configs=configs, steps=7, spacing="logsnr").num_steps == 7
    with pytest.raises(ConfigError, match="choose one of euler, euler_fine"):
        make_sampler("ddim", D, configs=configs)
    (configs / "sampler" / "loop.yaml").write_text("defaults:\n  - loop\n")
    (configs / "sampler" / "eager.yaml").write_text(EULER_YAML.replace("_partial_: true", "_partial_: false"))
    (configs / "sampler" / "unknown.yaml").write_text("_target_: nowhere.Sampler\n_partial_: true\n")
    errors = {"loop": "in a loop: loop -> loop", "eager": "_partial_: true", "unknown": "nowhere"}
    for name, match in errors.items():
        with pytest.raises(ConfigError, match=match):
            make_sampler(name, D, configs=configs)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(configs / "sampler"), version_base="1.3"):
        from_hydra = hydra.utils.instantiate(compose("euler_fine"))(D)  # sampler=euler_fine
    assert (
        type(from_hydra) is EulerSampler
        and from_hydra.timesteps == make_sampler("euler_fine", D, configs=configs).timesteps
    )


def test_the_new_sampler_draws_deterministic_ddim_through_the_loop(configs):
    oracle = make_oracle(D, SHAPE)
    for spacing in ("uniform", "logsnr"):
        euler = make_sampler("euler", D, configs=configs, steps=12, spacing=spacing, clip_denoised=False)
        ddim = DDIMSampler(D, steps=12, spacing=spacing, clip_denoised=False)
        ours = sample(oracle, D, SHAPE, seeds=range(6), sampler=euler, batch_size=4)
        theirs = sample(oracle, D, SHAPE, seeds=range(6), sampler=ddim)
        assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
    assert torch.equal(ours, euler.sample(oracle, SHAPE, PerSampleNoise(range(6))))


def test_guidance_wraps_the_new_sampler(configs):
    g = torch.Generator().manual_seed(0)
    oracle = ClassConditionalOracle(
        D, torch.rand((3, *SHAPE), generator=g) - 0.5, torch.full((3, *SHAPE), 0.4)
    )
    guided = make_sampler("euler", D, configs=configs, guidance_scale=2.0, clip_denoised=False)
    ddim = make_sampler("ddim", D, steps=10, guidance_scale=2.0, clip_denoised=False)
    cond = {"class_labels": torch.tensor([0, 1, 2, 1])}
    ours = sample(oracle, D, SHAPE, seeds=range(4), sampler=guided, cond=cond)
    assert guided.rows_per_image == 2 and oracle.batch_sizes[-1] == 8  # both halves in one call
    theirs = sample(oracle, D, SHAPE, seeds=range(4), sampler=ddim, cond=cond)
    assert torch.allclose(ours, theirs, atol=1e-5)
