"""Released weights (diffusers folders, pesser state dicts) and our checkpoints -> our U-Net; clear errors."""

import json

import pytest
import torch

from ddpm.errors import CheckpointError, ConfigError
from ddpm.models import UNet
from ddpm.weights.diffusers_unet import diffusers_config_for
from ddpm.weights.load import load_model
from ddpm.weights.presets import PRESETS
from ddpm.weights.released import load_pesser_state_dict
from tests.evaluation.helpers import write_lightning_checkpoint
from tests.helpers import tiny_unet

TINY_ARCH = {"ch": 32, "ch_mult": (1, 2), "num_res_blocks": 1, "attn_resolutions": (4,), "resolution": 8}


def _inputs(resolution=8, batch=2):
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, resolution, resolution, generator=g), torch.tensor([0, 999])[:batch]


def test_diffusers_folder_gives_outputs_identical_to_unet2dmodel(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    reference = diffusers.UNet2DModel(**diffusers_config_for(**TINY_ARCH, dropout=0.0)).eval()
    with torch.no_grad():  # random weights everywhere (diffusers' init leaves no layer at zero? make sure)
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    reference.save_pretrained(tmp_path / "pipe" / "unet")
    diffusers.DDPMScheduler(num_train_timesteps=1000, variance_type="fixed_small").save_pretrained(
        tmp_path / "pipe" / "scheduler"
    )
    loaded = load_model(tmp_path / "pipe")
    x, t = _inputs()
    with torch.no_grad():
        ours, theirs = loaded.net(x, t), reference(x, t).sample
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert loaded.kind == "diffusers" and loaded.image_shape == (3, 8, 8)
    assert loaded.diffusion.num_timesteps == 1000
    # the paper's choice for a 32x32-or-smaller model (fixed-large) wins over the scheduler's, with a note
    assert loaded.diffusion.var_type == "fixed_large"
    assert any("variance_type" in note for note in loaded.notes)
    assert load_model(tmp_path / "pipe", var_type="fixed_small").diffusion.var_type == "fixed_small"
    with pytest.raises(CheckpointError, match=r"ch=32 \(preset cifar10 expects 128\)"):
        load_model(tmp_path / "pipe", preset="cifar10")


def test_diffusers_folder_with_mismatched_weights_is_a_clear_error(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    model = diffusers.UNet2DModel(**diffusers_config_for(**TINY_ARCH, dropout=0.0))
    model.save_pretrained(tmp_path / "unet")
    config = json.loads((tmp_path / "unet" / "config.json").read_text())
    config["block_out_channels"] = [64, 128]  # config no longer describes these weights
    (tmp_path / "unet" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_model(tmp_path / "unet")


def test_pesser_state_dict_loads_directly(tmp_path):
    net = tiny_unet(3, 8)
    path = tmp_path / "ema_tiny_model" / "model-1000.ckpt"
    path.parent.mkdir()
    torch.save(net.state_dict(), path)
    loaded = load_pesser_state_dict(path, resolution=8)
    x, t = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded.net(x, t), net(x, t))
    assert loaded.kind == "pesser" and loaded.diffusion.var_type == "fixed_large" and loaded.notes == []
    with pytest.raises(ConfigError, match="pretrained=<preset>"):
        load_model(path)  # a plain state dict needs a preset (resolution, variance)
    with pytest.raises(CheckpointError, match=r"ch_mult=\(1, 2\) \(preset cifar10 expects \(1, 2, 2, 2\)\)"):
        load_model(path, preset="cifar10")


def test_pesser_cifar10_preset_full_size(tmp_path):
    net = UNet(**PRESETS["cifar10"].unet)
    path = tmp_path / "ema_diffusion_cifar10_model" / "model-790000.ckpt"
    path.parent.mkdir()
    torch.save(net.state_dict(), path)
    loaded = load_model(path, preset="cifar10")
    assert loaded.image_shape == (3, 32, 32) and loaded.diffusion.var_type == "fixed_large"
    assert sum(p.numel() for p in loaded.net.parameters()) == 35_746_307
    sd = net.state_dict()
    del sd["mid.attn_1.q.weight"]
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="mid.attn_1.q.weight"):
        load_model(path, preset="cifar10")


def test_256_presets_use_fixed_small():
    assert {name: p.var_type for name, p in PRESETS.items()} == {
        "cifar10": "fixed_large",
        "lsun_church": "fixed_small",
        "lsun_bedroom": "fixed_small",
        "lsun_cat": "fixed_small",
        "celeba_hq": "fixed_small",
    }


def test_our_checkpoint_loads_the_ema_weights(tmp_path):
    module, _ = write_lightning_checkpoint(tmp_path / "last.ckpt", tmp_path)
    loaded = load_model(tmp_path / "last.ckpt")
    assert loaded.kind == "lightning" and loaded.weights == "ema"
    assert loaded.image_shape == (1, 16, 16) and loaded.diffusion.num_timesteps == 10
    for ours, ema in zip(loaded.net.parameters(), module.ema_net.parameters()):
        assert torch.equal(ours, ema)
    raw = load_model(tmp_path / "last.ckpt", use_ema=False)
    assert raw.weights == "raw" and torch.equal(next(raw.net.parameters()), next(module.net.parameters()))
    assert not torch.equal(next(raw.net.parameters()), next(loaded.net.parameters()))


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.ckpt")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CheckpointError, match="not a diffusers model"):
        load_model(tmp_path / "empty_dir")
    (tmp_path / "bad.ckpt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_model(tmp_path / "bad.ckpt")
    torch.save({"weights": [1, 2]}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="state dict"):
        load_model(tmp_path / "other.ckpt", preset="cifar10")


def test_var_type_overrides_the_reverse_variance_of_our_checkpoints(tmp_path):
    write_lightning_checkpoint(tmp_path / "last.ckpt", tmp_path)
    trained = load_model(tmp_path / "last.ckpt")
    small = load_model(tmp_path / "last.ckpt", var_type="fixed_small")
    assert trained.diffusion.var_type == "fixed_large" and small.diffusion.var_type == "fixed_small"
    assert torch.equal(small.diffusion.betas, trained.diffusion.betas)
    assert small.diffusion.mean_type == trained.diffusion.mean_type
    with pytest.raises(ConfigError, match="learned variance"):
        load_model(tmp_path / "last.ckpt", var_type="learned_range")
