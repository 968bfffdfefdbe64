"""Parity between our UNet and diffusers' UNet2DModel (DDPM configuration); the port in ddpm.weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ddpm.models import UNet
from ddpm.weights.diffusers_folder import load_diffusers_unet
from ddpm.weights.diffusers_unet import (
    UNET2D_SETTINGS,
    convert_diffusers_state_dict,
    diffusers_config_for,
    to_diffusers_state_dict,
    unet_kwargs_from_diffusers_config,
)
from tests.helpers import randomize_

diffusers = pytest.importorskip("diffusers")
UNet2DModel = diffusers.UNet2DModel

CIFAR10 = {}
LSUN256 = {"ch_mult": (1, 1, 2, 2, 4, 4), "attn_resolutions": (16,), "resolution": 256, "dropout": 0.0}
UNET_DEFAULTS = {
    "in_channels": 3,
    "out_channels": 3,
    "ch": 128,
    "ch_mult": (1, 2, 2, 2),
    "num_res_blocks": 2,
    "attn_resolutions": (16,),
    "dropout": 0.1,
    "resolution": 32,
}
SMALL = {"ch": 32, "ch_mult": (1, 2, 2), "num_res_blocks": 2, "attn_resolutions": (8,), "resolution": 16}

# config.json of google/ddpm-cifar10-32 as released (diffusers' defaults fill missing keys: dropout=0).
HUB_CIFAR10_CONFIG = {
    "_class_name": "UNet2DModel",
    "_diffusers_version": "0.0.4",
    "act_fn": "silu",
    "attention_head_dim": None,
    "block_out_channels": [128, 256, 256, 256],
    "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "in_channels": 3,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 32,
    "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}


def random_diffusers(kwargs: dict, seed: int = 0) -> UNet2DModel:
    return randomize_(UNet2DModel(**diffusers_config_for(**kwargs)), seed).eval()


def converted(d: UNet2DModel) -> UNet:
    kwargs = unet_kwargs_from_diffusers_config(dict(d.config))
    ours = UNet(**kwargs).eval()
    ours.load_state_dict(convert_diffusers_state_dict(d.state_dict(), kwargs), strict=True)
    return ours


def assert_same_outputs(ours: UNet, d: UNet2DModel, batch: int = 4, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    r = ours.resolution
    x = torch.randn(batch, ours.in_channels, r, r, generator=g)
    t = torch.cat([torch.tensor([0, 999]), torch.randint(0, 1000, (batch - 2,), generator=g)])
    with torch.no_grad():
        a = ours(x, t)
        b = d(x, t).sample
    assert a.abs().max() > 0.1  # the outputs are not trivially small
    assert (a - b).abs().max().item() <= 1e-5


@pytest.mark.parametrize("kwargs", [CIFAR10, LSUN256, SMALL], ids=["cifar10", "lsun256", "small"])
def test_parameter_counts_match_diffusers(kwargs: dict) -> None:
    with torch.device("meta"):
        ours = UNet(**kwargs)
        d = UNet2DModel(**diffusers_config_for(**kwargs))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in d.parameters())


def test_paper_diffusers_config_matches_reference() -> None:
    cfg = diffusers_config_for()  # google/ddpm-cifar10-32's config.json
    assert cfg["block_out_channels"] == (128, 256, 256, 256)
    assert cfg["down_block_types"] == ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D")
    assert cfg["up_block_types"] == ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D")
    assert (cfg["layers_per_block"], cfg["attention_head_dim"], cfg["norm_num_groups"], cfg["norm_eps"]) == (
        2,
        None,
        32,
        1e-6,
    )
    assert (cfg["downsample_padding"], cfg["flip_sin_to_cos"], cfg["freq_shift"]) == (0, False, 1)
    lsun = diffusers_config_for(**LSUN256)
    assert lsun["block_out_channels"] == (128, 128, 256, 256, 512, 512)
    assert lsun["down_block_types"][4] == "AttnDownBlock2D" and lsun["up_block_types"][1] == "AttnUpBlock2D"


@pytest.mark.parametrize("kwargs", [CIFAR10, LSUN256, SMALL], ids=["cifar10", "lsun256", "small"])
def test_config_round_trip(kwargs: dict) -> None:
    expected = {**UNET_DEFAULTS, **kwargs}
    assert unet_kwargs_from_diffusers_config(diffusers_config_for(**expected)) == expected


def test_hub_config_of_released_cifar10_model() -> None:
    assert unet_kwargs_from_diffusers_config(HUB_CIFAR10_CONFIG) == {**UNET_DEFAULTS, "dropout": 0.0}


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"flip_sin_to_cos": True}, "flip_sin_to_cos=True"),
        ({"attention_head_dim": 8}, "attention_head_dim=8 gives multi-head"),
        ({"time_embedding_type": "fourier"}, "time_embedding_type='fourier'"),
        ({"norm_eps": 1e-5}, "norm_eps=1e-05"),
        ({"downsample_padding": 1}, "downsample_padding=1"),
        (
            {"up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]},
            "attention at different",
        ),
        (
            {"down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D"]},
            "Cross",
        ),
        ({"block_out_channels": [128, 192, 256, 256]}, "multiples of block_out_channels"),
        ({"class_embed_type": "timestep"}, "class_embed_type='timestep'"),
        ({"num_class_embeds": 1}, "num_class_embeds=1"),
    ],
)
def test_unsupported_config_is_named(change: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match="unsupported setting") as err:
        unet_kwargs_from_diffusers_config({**HUB_CIFAR10_CONFIG, **change})
    assert pattern in str(err.value)


def test_head_dim_equal_to_channels_is_single_head() -> None:
    cfg = {**diffusers_config_for(**SMALL), "attention_head_dim": 64}
    assert unet_kwargs_from_diffusers_config(cfg)["attn_resolutions"] == (8,)


def test_parity_small() -> None:
    d = random_diffusers(SMALL)
    assert_same_outputs(converted(d), d, batch=4)


def test_parity_small_without_attention_and_odd_sizes() -> None:
    kwargs = {"ch": 64, "ch_mult": (1, 3), "num_res_blocks": 1, "attn_resolutions": (), "resolution": 8,
              "in_channels": 1, "out_channels": 2}  # fmt: skip
    d = random_diffusers(kwargs, seed=3)
    assert_same_outputs(converted(d), d, batch=3)


def test_parity_cifar10_full_config() -> None:
    d = random_diffusers(CIFAR10, seed=2)
    assert_same_outputs(converted(d), d, batch=2)


def test_legacy_attention_key_names() -> None:
    """Older hub checkpoints store attention as query/key/value/proj_attn."""
    d = random_diffusers(SMALL)
    legacy = {}
    for k, v in d.state_dict().items():
        for new, old in [("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")]:
            k = k.replace(f".{new}.", f".{old}.")
        legacy[k] = v
    kwargs = unet_kwargs_from_diffusers_config(dict(d.config))
    ours = UNet(**kwargs).eval()
    ours.load_state_dict(convert_diffusers_state_dict(legacy, kwargs), strict=True)
    assert_same_outputs(ours, d)


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_load_diffusers_unet_round_trip(tmp_path: Path, safe: bool) -> None:
    d = random_diffusers(SMALL, seed=4)
    d.save_pretrained(tmp_path, safe_serialization=safe)
    ours = load_diffusers_unet(tmp_path)
    assert not ours.training
    assert_same_outputs(ours, d)


def test_load_diffusers_unet_pipeline_folder(tmp_path: Path) -> None:
    d = random_diffusers(SMALL, seed=5)
    d.save_pretrained(tmp_path / "unet")
    (tmp_path / "model_index.json").write_text(
        json.dumps({"_class_name": "DDPMPipeline", "unet": ["x", "y"]})
    )
    assert_same_outputs(load_diffusers_unet(str(tmp_path)), d)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_diffusers_unet(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(diffusers_config_for(**SMALL)))
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
        load_diffusers_unet(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_diffusers_unet(tmp_path / "nope")


def test_shape_mismatch_names_the_key(tmp_path: Path) -> None:
    d = random_diffusers(SMALL)
    d.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["block_out_channels"] = [64, 128, 128]  # config no longer matches the weights
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    pattern = (
        r"shape mismatches: \[.*'conv_in.weight -> conv_in.weight: checkpoint \(32, 3, 3, 3\) vs model \(64"
    )
    with pytest.raises(ValueError, match=pattern):
        load_diffusers_unet(tmp_path)


def test_missing_and_unexpected_keys_are_reported() -> None:
    d = random_diffusers(SMALL)
    kwargs = unet_kwargs_from_diffusers_config(dict(d.config))
    sd = dict(d.state_dict())
    sd.pop("mid_block.attentions.0.to_q.weight")
    sd["mystery.weight"] = torch.zeros(1)
    with pytest.raises(
        ValueError, match=r"unexpected keys: \['mystery.weight'\].*missing keys: \['mid.attn_1.q.weight'\]"
    ):
        convert_diffusers_state_dict(sd, kwargs)


def test_the_settings_table_holds_diffusers_own_defaults() -> None:
    import inspect

    signature = inspect.signature(UNet2DModel.__init__).parameters
    assert {key: default for key, (default, _) in UNET2D_SETTINGS.items()} == {
        key: signature[key].default for key in UNET2D_SETTINGS
    }
    # num_train_timesteps: only for a learned time embedding, which the DDPM U-Net has not
    assert set(signature) - set(UNET2D_SETTINGS) == {"self", "num_train_timesteps"}


@pytest.mark.parametrize(
    "kwargs", [CIFAR10, LSUN256, {**SMALL, "num_classes": 10}], ids=["cifar10", "lsun256", "conditional"]
)
def test_one_key_table_gives_both_directions(kwargs: dict) -> None:
    with torch.device("meta"):
        ours = UNet(**kwargs).state_dict()
        theirs = UNet2DModel(**diffusers_config_for(**kwargs)).state_dict()
    levels = len(kwargs.get("ch_mult", (1, 2, 2, 2)))
    written = to_diffusers_state_dict({k: torch.zeros(v.shape) for k, v in ours.items()}, levels)
    aliases = {k for k in theirs if ".Conv2d_0." in k}  # diffusers' second name of the downsample conv
    assert written.keys() == theirs.keys() - aliases
    read = convert_diffusers_state_dict({k: torch.zeros(v.shape) for k, v in theirs.items()}, kwargs)
    assert read.keys() == ours.keys()
