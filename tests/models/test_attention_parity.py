"""AttnBlock (SDPA) equals the paper's softmax(q k^T / sqrt(C)) v, computed explicitly in float64."""

import math

import pytest
import torch
import torch.nn.functional as F

from ddpm.models.unet import AttnBlock


def reference(block: AttnBlock, x: torch.Tensor) -> torch.Tensor:
    """The official code's attn_block in float64: GroupNorm, 1x1 q/k/v, weights w = softmax(q k^T / sqrt(C))
    over all H*W positions, h = w v, 1x1 proj_out, residual."""
    p = {name: t.detach().double() for name, t in block.state_dict().items()}
    x = x.double()
    b, c, hgt, wid = x.shape
    h = F.group_norm(x, block.norm.num_groups, p["norm.weight"], p["norm.bias"], block.norm.eps)
    tokens = h.reshape(b, c, hgt * wid).transpose(1, 2)  # [B, HW, C]

    def nin(name):
        return tokens @ p[f"{name}.weight"].view(c, c).T + p[f"{name}.bias"]

    q, k, v = nin("q"), nin("k"), nin("v")
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1)  # [B, HW, HW]
    out = (weights @ v) @ p["proj_out.weight"].view(c, c).T + p["proj_out.bias"]
    return x + out.transpose(1, 2).reshape(b, c, hgt, wid)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("channels", "size"), [(32, 8), (64, 4)])
def test_sdpa_attention_equals_float64_reference(channels, size, channels_last):
    torch.manual_seed(channels + size)
    block = AttnBlock(channels)
    with torch.no_grad():  # proj_out is zero-initialised: give every weight a random value
        for param in block.parameters():
            param.copy_(torch.randn_like(param) * 0.3)
    x = torch.randn(3, channels, size, size) * 2
    if channels_last:
        block = block.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    expected = reference(block, x)
    with torch.no_grad():
        got = block(x)
    assert got.dtype == torch.float32
    assert (expected - x.double()).abs().max() > 1.0  # the attention branch contributes
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)
