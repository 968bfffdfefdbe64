"""The U-Net's optional class embedding: unconditional models unchanged, the null class, label dropout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ddpm.diffusion.denoiser import NULL_LABEL
from ddpm.errors import ConfigError
from ddpm.models import UNet
from ddpm.models.unet import timestep_embedding
from tests.helpers import randomize_
from tests.models.test_unet import CIFAR10, LSUN256, SMALL


@pytest.mark.parametrize(("kwargs", "expected"), [(CIFAR10, 35_746_307), (LSUN256, 113_673_219)])
def test_unconditional_models_have_no_class_parameters(kwargs: dict, expected: int) -> None:
    with torch.device("meta"):
        plain, explicit = UNet(**kwargs), UNet(**kwargs, num_classes=0, class_dropout=0.3)
        conditional = UNet(**kwargs, num_classes=10)
    for model in (plain, explicit):
        assert sum(p.numel() for p in model.parameters()) == expected
        assert not any("class" in key for key in model.state_dict())
    assert sum(p.numel() for p in conditional.parameters()) == expected + 11 * 4 * 128
    assert conditional.class_embedding.weight.shape == (11, 512)


def _reference_temb(model: UNet, t: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """SiLU(MLP(sinusoid(t)) + E[row]) written out independently of UNet._embed."""
    h = timestep_embedding(t, model.ch)
    h = F.linear(F.silu(F.linear(h, model.temb.dense[0].weight, model.temb.dense[0].bias)),
                 model.temb.dense[1].weight, model.temb.dense[1].bias)  # fmt: skip
    if rows is not None:
        h = h + model.class_embedding.weight[rows]
    return F.silu(h)


def test_unconditional_output_is_unchanged_for_the_same_weights() -> None:
    """A state dict without class embedding loads into num_classes=0 and gives the same output as
    the unconditional forward written out (timestep MLP only)."""
    torch.manual_seed(0)
    ref = randomize_(UNet(**SMALL, in_channels=1, out_channels=1), seed=1).eval()
    model = UNet(**SMALL, in_channels=1, out_channels=1)
    model.load_state_dict(ref.state_dict(), strict=True)
    model.eval()
    x, t = torch.randn(3, 1, 16, 16), torch.tensor([0, 5, 999])
    assert torch.equal(model(x, t), ref(x, t))
    assert torch.equal(model._embed(x, t, None), _reference_temb(model, t, None))


def test_class_embedding_is_added_after_the_timestep_mlp_and_null_is_the_last_row() -> None:
    model = randomize_(UNet(**SMALL, in_channels=1, out_channels=1, num_classes=3), seed=2).eval()
    x, t = torch.randn(4, 1, 16, 16), torch.tensor([1, 2, 3, 4])
    labels = torch.tensor([0, 2, NULL_LABEL, 3])  # -1 and K=3 are both the null class
    expected = _reference_temb(model, t, torch.tensor([0, 2, 3, 3]))
    assert torch.allclose(model._embed(x, t, labels), expected, atol=1e-6)
    # None is the null class for every image, i.e. the unconditional prediction
    assert torch.equal(model(x, t), model(x, t, class_labels=torch.full((4,), NULL_LABEL)))
    # the label changes the output
    assert not torch.allclose(model(x, t, class_labels=torch.zeros(4, dtype=torch.long)), model(x, t))


def test_label_dropout_in_training_mode_only_and_from_the_global_rng() -> None:
    model = UNet(**SMALL, in_channels=1, num_classes=10, class_dropout=0.25)
    labels = torch.arange(4000) % 10
    model.train()
    torch.manual_seed(5)
    rows = model.class_indices(labels, 4000, torch.device("cpu"))
    dropped = rows == 10
    assert abs(dropped.float().mean().item() - 0.25) < 0.03  # 4 sigma of a Binomial(4000, 0.25) / 4000
    assert torch.equal(rows[~dropped], labels[~dropped])
    torch.manual_seed(5)  # the LightningModule reseeds the global RNG every step: same drops again
    expected = torch.where(torch.rand(4000) < 0.25, 10, labels)
    assert torch.equal(rows, expected)
    model.eval()
    assert torch.equal(model.class_indices(labels, 4000, torch.device("cpu")), labels)


def test_bad_labels_and_settings_are_config_errors() -> None:
    model = UNet(**SMALL, in_channels=1, num_classes=3).eval()
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([1, 2])
    with pytest.raises(ConfigError, match=r"class_labels must be in 0\.\.2"):
        model(x, t, class_labels=torch.tensor([0, 4]))
    with pytest.raises(ConfigError, match=r"shape \[B\]"):
        model(x, t, class_labels=torch.tensor([0]))
    with pytest.raises(ConfigError, match="num_classes=0"):
        UNet(**SMALL, in_channels=1)(x, t, class_labels=torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="num_classes"):
        UNet(**SMALL, num_classes=-1)
    with pytest.raises(ConfigError, match="class_dropout"):
        UNet(**SMALL, num_classes=2, class_dropout=1.0)
