"""Tests of the DDPM U-Net (Ho et al. 2020, App. B): size, naming, initialisation, conditioning, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ddpm.models import UNet
from ddpm.models.unet import AttnBlock, timestep_embedding
from tests.helpers import randomize_

CIFAR10 = {}  # the defaults
LSUN256 = {"ch_mult": (1, 1, 2, 2, 4, 4), "attn_resolutions": (16,), "resolution": 256, "dropout": 0.0}
# A small config with every feature (channel changes, attention level, 3 levels) that runs in milliseconds.
SMALL = {"ch": 32, "ch_mult": (1, 2, 2), "num_res_blocks": 2, "attn_resolutions": (8,), "resolution": 16}


@pytest.mark.parametrize(("kwargs", "expected"), [(CIFAR10, 35_746_307), (LSUN256, 113_673_219)])
def test_parameter_count_of_paper_configs(kwargs: dict, expected: int) -> None:
    with torch.device("meta"):
        model = UNet(**kwargs)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_frozen_output_layer_leaves_the_rest_trainable() -> None:
    model = UNet(**SMALL)
    total = sum(p.numel() for p in model.parameters())
    model.conv_out.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == total - model.conv_out.weight.numel() - 3


def test_submodule_names_follow_official_code() -> None:
    """pesser/pytorch_diffusion naming, so its released state dicts load without renaming."""
    with torch.device("meta"):
        model = UNet()
    keys = set(model.state_dict())
    for key in [
        "temb.dense.0.weight",
        "temb.dense.1.bias",
        "conv_in.weight",
        "down.0.block.0.norm1.weight",
        "down.0.block.1.conv2.weight",
        "down.1.block.0.nin_shortcut.weight",
        "down.1.block.0.temb_proj.weight",
        "down.1.attn.1.q.weight",
        "down.1.attn.0.proj_out.bias",
        "down.2.downsample.conv.weight",
        "mid.block_1.conv1.weight",
        "mid.attn_1.norm.weight",
        "mid.block_2.norm2.bias",
        "up.0.block.2.nin_shortcut.weight",
        "up.1.attn.2.k.weight",
        "up.3.upsample.conv.weight",
        "norm_out.weight",
        "conv_out.bias",
    ]:
        assert key in keys, key
    assert not any(
        k.startswith(("down.3.downsample", "up.0.upsample", "down.0.attn", "up.0.attn")) for k in keys
    )
    # up[i] is indexed by level like down[i]: level 1 (16x16) has attention after each of its 3 blocks.
    assert len(model.up[1].attn) == 3 and len(model.down[1].attn) == 2
    # up-block inputs are [h, skip]; the last block of a level gets the skip from the level above / conv_in.
    assert model.up[0].block[0].in_channels == 256 + 128 and model.up[0].block[2].in_channels == 128 + 128
    assert model.up[3].block[0].in_channels == 256 + 256
    assert model.conv_out.weight.shape == (3, 128, 3, 3)


def test_output_shape_and_zero_init() -> None:
    torch.manual_seed(0)
    model = UNet(**SMALL).eval()
    x = torch.randn(3, 3, 16, 16)
    out = model(x, torch.tensor([0, 10, 999]))
    assert out.shape == (3, 3, 16, 16)
    assert torch.count_nonzero(out) == 0  # conv_out is zero-initialised
    for block in [model.down[0].block[0], model.mid.block_1, model.up[2].block[1]]:
        assert torch.count_nonzero(block.conv2.weight) == 0
    assert torch.count_nonzero(model.mid.attn_1.proj_out.weight) == 0
    assert torch.count_nonzero(model.down[0].block[0].conv1.weight) > 0
    assert all(torch.count_nonzero(m.bias) == 0 for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_out_channels_and_full_cifar_shape() -> None:
    model = UNet(**{**SMALL, "in_channels": 1, "out_channels": 2})
    assert model(torch.randn(2, 1, 16, 16), torch.tensor([1, 2])).shape == (2, 2, 16, 16)
    big = UNet().eval()
    with torch.no_grad():
        assert big(torch.randn(1, 3, 32, 32), torch.tensor([5])).shape == (1, 3, 32, 32)


def test_time_conditioning() -> None:
    model = randomize_(UNet(**SMALL)).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        a = model(x, torch.tensor([10, 10]))
        b = model(x, torch.tensor([500, 500]))
        a2 = model(x, torch.tensor([10, 10]))
        scalar = model(x, torch.tensor(10))
    assert (a - b).abs().max() > 1e-3
    assert torch.equal(a, a2)
    assert torch.equal(a, scalar)  # a 0-d t is broadcast over the batch


def test_timestep_embedding_formula() -> None:
    t = torch.tensor([0, 1, 17, 999])
    emb = timestep_embedding(t, 128)
    half = 64
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / (half - 1))
    args = t.double()[:, None] * freqs[None]
    ref = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    assert emb.dtype == torch.float32 and emb.shape == (4, 128)
    torch.testing.assert_close(emb.double(), ref, atol=1e-4, rtol=0)  # float32 phase error at t=999
    torch.testing.assert_close(emb[:2].double(), ref[:2], atol=1e-6, rtol=0)


def test_attention_matches_explicit_softmax() -> None:
    block = randomize_(AttnBlock(64)).eval()
    x = torch.randn(2, 64, 8, 8)
    h = block.norm(x)
    q, k, v = (F.conv2d(h, m.weight, m.bias).flatten(2) for m in (block.q, block.k, block.v))  # [B, C, HW]
    w = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(64), dim=-1)
    o = torch.einsum("bij,bcj->bci", w, v).reshape(2, 64, 8, 8)
    ref = x + F.conv2d(o, block.proj_out.weight, block.proj_out.bias)
    with torch.no_grad():
        torch.testing.assert_close(block(x), ref, atol=1e-5, rtol=1e-5)


def test_channels_last_input() -> None:
    model = randomize_(UNet(**SMALL)).eval()
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([3, 700])
    with torch.no_grad():
        ref = model(x, t)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last), t)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_backward_reaches_every_parameter() -> None:
    model = randomize_(UNet(**SMALL)).train()
    out = model(torch.randn(2, 3, 16, 16), torch.tensor([1, 999]))
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_lists_from_yaml_are_accepted() -> None:
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({"ch": 32, "ch_mult": [1, 2], "attn_resolutions": [8], "resolution": 16})
    model = UNet(**cfg)
    assert model.ch_mult == (1, 2) and model.attn_resolutions == (8,)
    assert model(torch.randn(1, 3, 16, 16), torch.tensor([1])).shape == (1, 3, 16, 16)


def test_error_wrong_image_size() -> None:
    model = UNet(**SMALL)
    with pytest.raises(ValueError, match="input size 32x32") as err:
        model(torch.randn(1, 3, 32, 32), torch.tensor([1]))
    msg = str(err.value)
    # the library names its own arguments; the Hydra keys are the train CLI's check_shapes's job
    assert "resolution=16" in msg and "16x16" in msg and "model." not in msg


def test_image_shape() -> None:
    assert UNet(**{**SMALL, "in_channels": 1}).image_shape == (1, 16, 16)
    with torch.device("meta"):
        assert UNet().image_shape == (3, 32, 32)


def test_error_wrong_channels_and_t_shape() -> None:
    model = UNet(**SMALL)
    with pytest.raises(ValueError, match=r"got 1 input channels but was built with in_channels=3"):
        model(torch.randn(1, 1, 16, 16), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"t must have shape \[B\]"):
        model(torch.randn(2, 3, 16, 16), torch.tensor([1, 2, 3]))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"resolution": 36}, r"resolution=36 is not divisible by 2\*\*\(len\(ch_mult\)-1\)=8"),
        ({"ch": 48}, r"ch=48 must be a positive multiple of 32"),
        ({"ch_mult": ()}, r"ch_mult must be a non-empty"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"ch_mult": (1, 1.5)}, r"ch_mult must contain integers"),
    ],
)
def test_error_bad_config(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern), torch.device("meta"):
        UNet(**kwargs)


def test_attention_resolution_that_no_level_has_warns() -> None:
    pattern = r"attn_resolutions \[15\] contains \[15\].*level resolutions.*\[32, 16, 8, 4\]"
    with pytest.warns(UserWarning, match=pattern), torch.device("meta"):
        model = UNet(attn_resolutions=(15,))
    assert not any(len(level.attn) for level in [*model.down, *model.up])
