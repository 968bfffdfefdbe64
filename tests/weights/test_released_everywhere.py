"""Released weights beyond ddpm-eval: ddpm-sample on a diffusers folder and on a pesser state dict, and
ddpm-train init_from=<weights> (fine-tuning: the weights only, a fresh optimizer and step 0)."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ddpm.cli.ddpm_sample import generate_images
from ddpm.cli.ddpm_train import train
from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import CheckpointError, ConfigError
from ddpm.models import UNet
from ddpm.sampling import sample
from ddpm.utils.config import config_dir
from ddpm.weights import init_from_weights, load_model
from ddpm.weights.diffusers_unet import diffusers_config_for
from ddpm.weights.presets import PRESETS
from tests.evaluation.helpers import write_lightning_checkpoint
from tests.helpers import TINY, compose_train, randomize_

# the architecture of TINY's network (tests.helpers): 16x16 grayscale digits
TINY_NET = {
    "in_channels": 1,
    "out_channels": 1,
    "ch": 32,
    "ch_mult": (1, 2),
    "num_res_blocks": 1,
    "attn_resolutions": (8,),
    "resolution": 16,
    "dropout": 0.0,
}


def diffusers_folder(path: Path, arch: dict, seed: int = 0):
    """A pipeline folder written by diffusers itself (unet/ + scheduler/); returns its UNet2DModel."""
    diffusers = pytest.importorskip("diffusers")
    unet = randomize_(diffusers.UNet2DModel(**diffusers_config_for(**arch)), seed).eval()
    unet.save_pretrained(path / "unet")
    diffusers.DDPMScheduler(num_train_timesteps=1000, variance_type="fixed_small").save_pretrained(
        path / "scheduler"
    )
    return unet


def compose_sample(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("sample", overrides=overrides)


def test_ddpm_sample_on_a_diffusers_folder_samples_that_network(tmp_path):
    arch = {**TINY_NET, "in_channels": 3, "out_channels": 3, "resolution": 8, "attn_resolutions": (4,)}
    unet = diffusers_folder(tmp_path / "pipe", arch)
    settings = ["sampler.steps=3", "num_samples=3", "batch_size=2", "save_npz=true", "progress=false"]
    cfg = compose_sample([f"ckpt_path={tmp_path / 'pipe'}", *settings, f"output_dir={tmp_path / 'out'}"])
    result = generate_images(cfg)
    assert np.load(tmp_path / "out" / "samples.npz")["arr_0"].shape == (3, 8, 8, 3)
    # the same images from diffusers' own network, with the paper's variance for a 32x32-or-smaller model
    diffusion = GaussianDiffusion(var_type="fixed_large")
    with torch.no_grad():
        expected = sample(
            lambda x, t: unet(x, t).sample, diffusion, (3, 8, 8), sampler="ddim", steps=3, seeds=[0, 1, 2]
        )
    assert expected.std() > 0.1
    torch.testing.assert_close(result["images"], expected, rtol=0, atol=1e-4)


def test_ddpm_sample_on_a_pesser_state_dict(tmp_path):
    net = randomize_(UNet(**PRESETS["cifar10"].unet), seed=1).eval()
    path = tmp_path / "ema_diffusion_cifar10_model" / "model-790000.ckpt"
    path.parent.mkdir()
    torch.save(net.state_dict(), path)
    common = [f"ckpt_path={path}", "sampler.steps=1", "num_samples=1", "save_npz=true", "progress=false"]
    with pytest.raises(ConfigError, match="pretrained=<preset>"):
        generate_images(compose_sample([*common, f"output_dir={tmp_path / 'a'}"]))
    result = generate_images(compose_sample([*common, "pretrained=cifar10", f"output_dir={tmp_path / 'b'}"]))
    assert np.load(tmp_path / "b" / "samples.npz")["arr_0"].shape == (1, 32, 32, 3)
    with torch.no_grad():
        expected = sample(net, GaussianDiffusion(), (3, 32, 32), sampler="ddim", steps=1, seeds=[0])
    torch.testing.assert_close(result["images"], expected, rtol=0, atol=1e-5)


def _assert_weights_equal(net: torch.nn.Module, reference: dict[str, torch.Tensor]) -> None:
    state = net.state_dict()
    assert state.keys() == reference.keys()
    for key, value in state.items():
        assert torch.equal(value, reference[key]), key


def test_ddpm_train_init_from_a_diffusers_folder_starts_from_its_weights(tmp_path):
    diffusers_folder(tmp_path / "pipe", TINY_NET)
    released = load_model(tmp_path / "pipe").net.state_dict()
    overrides = [*TINY, f"init_from={tmp_path / 'pipe'}", "trainer.max_steps=1", "module.optimizer.lr=0"]
    cfg = compose_train([*overrides, "trainer.val_check_interval=1"], tmp_path / "run")
    _, objects = train(cfg)
    # lr=0: after one step the weights are still the step-0 ones; the first EMA update copies them
    assert objects["trainer"].global_step == 1  # a new run, not a resume
    _assert_weights_equal(objects["module"].net, released)
    _assert_weights_equal(objects["module"].ema_net, released)


def test_init_from_our_checkpoint_takes_its_ema_weights(tmp_path):
    saved, cfg = write_lightning_checkpoint(tmp_path / "last.ckpt", tmp_path / "a")
    fresh = hydra.utils.instantiate(cfg.module)
    assert not torch.equal(next(fresh.net.parameters()), next(saved.ema_net.parameters()))
    init_from_weights(fresh, tmp_path / "last.ckpt")
    _assert_weights_equal(fresh.net, saved.ema_net.state_dict())
    _assert_weights_equal(fresh.ema_net, saved.ema_net.state_dict())


def test_init_from_refuses_other_shapes_and_a_resume_in_one_line(tmp_path):
    diffusers_folder(tmp_path / "pipe", TINY_NET)
    init = f"init_from={tmp_path / 'pipe'}"
    cfg = compose_train([*TINY, init, "model.ch=64"], tmp_path / "run")
    with pytest.raises(CheckpointError, match="does not fit the model being trained: shape") as info:
        train(cfg)
    assert "\n" not in str(info.value)
    cfg = compose_train([*TINY, init, f"ckpt_path={tmp_path / 'last.ckpt'}"], tmp_path / "run2")
    with pytest.raises(ConfigError, match="init_from and ckpt_path exclude each other"):
        train(cfg)
    torch.save(UNet(**TINY_NET).state_dict(), tmp_path / "ema_model.ckpt")  # a pesser file needs a preset
    cfg = compose_train([*TINY, f"init_from={tmp_path / 'ema_model.ckpt'}"], tmp_path / "run3")
    with pytest.raises(ConfigError, match="init_pretrained=<preset>"):
        train(cfg)
