"""A new kind of conditioning, end to end, written in this one file and touching no file of src/ddpm.

The kind: a per-image "style" vector (a stand-in for a text embedding) under the key ``style``. What it
needs, and where a shipped kind would put it:

* the data yield it: :class:`StyleData` (a ``DiffusionDataModule`` whose items are a
  :class:`~ddpm.data.base.ConditionedDataset`'s ``(image, {"style": e})``) -- ``src/ddpm/data/<kind>.py``;
* the network take it, and drop it to its null while training: :class:`StyleNet` --
  ``src/ddpm/models/<net>.py``;
* its null for classifier-free guidance: :func:`null_style` -- beside the network, given to guidance as
  ``null_cond``;
* the command line's key for it -- ``src/ddpm/cli/<kind>.py``, as ``cli/labels.py`` is for ``labels=``.

The training loss, the flip, the samplers, the sampling loop and guidance take it as they are.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from ddpm.data.base import ConditionedDataset, DiffusionDataModule
from ddpm.diffusion import GaussianDiffusion
from ddpm.diffusion.denoiser import Cond, null_labels, split_batch, with_images
from ddpm.errors import ConfigError
from ddpm.lightning.module import DDPMLitModule
from ddpm.sampling import make_sampler, sample
from ddpm.sampling.guidance import GuidedModel
from tests.data.test_flip import stub_trainer

STYLE = "style"
SHAPE = (1, 4, 4)
DIFFUSION = GaussianDiffusion(num_timesteps=100)


class StyleData(DiffusionDataModule):
    """Eight 1x4x4 images, each with its own 3-vector style."""

    def __init__(self) -> None:
        super().__init__(batch_size=4, random_flip=True)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return SHAPE

    def setup(self, stage: str | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        images = torch.rand(8, *SHAPE, generator=g) * 2 - 1
        self.train_set = self.val_set = ConditionedDataset(images, {STYLE: torch.randn(8, 3, generator=g)})


class StyleNet(nn.Module):
    """``model(x_t, t, style=e)``: a tiny conv net biased by a linear map of the style (no style: zeros,
    the null); while training each image's style is dropped to the null with probability ``dropout``."""

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 1, 3, padding=1)
        self.temb, self.style = nn.Linear(1, 8), nn.Linear(3, 8, bias=False)
        self.dropout = dropout

    def forward(self, x: Tensor, t: Tensor, style: Tensor | None = None) -> Tensor:
        emb = self.temb(t.float()[:, None] / 100.0)
        if style is not None:
            if self.training:
                style = style * (torch.rand(style.shape[0], 1, device=style.device) >= self.dropout)
            emb = emb + self.style(style)
        return self.conv2(torch.tanh(self.conv1(x) + emb[:, :, None, None]))


def null_style(cond: Cond) -> dict[str, Tensor]:
    """The null of the style: zeros (what the network sees for a dropped style)."""
    if STYLE not in cond:
        raise ConfigError("guidance by style needs a style")
    return {**cond, STYLE: torch.zeros_like(cond[STYLE])}


def test_the_data_yields_the_kind_and_the_flip_keeps_it():
    dm = StyleData()
    batch = next(iter(dm.train_dataloader()))
    x0, cond = split_batch(batch)
    assert x0.shape == (4, *SHAPE) and set(cond) == {STYLE} and cond[STYLE].shape == (4, 3)
    dm.trainer = stub_trainer(step=1)
    flipped, flipped_cond = split_batch(dm.on_after_batch_transfer(batch, 0))
    assert torch.equal(flipped_cond[STYLE], cond[STYLE])
    assert all(torch.equal(a, b) or torch.equal(a, b.flip(-1)) for a, b in zip(flipped, x0))
    assert with_images({"x0": x0, STYLE: cond[STYLE]}, flipped)["x0"] is flipped


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # no Trainer: the step's log is skipped
def test_the_training_loss_carries_the_kind_to_the_network():
    batch = next(iter(StyleData().train_dataloader()))
    module = DDPMLitModule(StyleNet(dropout=0.0), DIFFUSION, warmup_steps=0)
    module.training_step(batch, 0).backward()
    assert module.net.style.weight.grad.abs().sum() > 0  # the style reached the loss
    x0, _ = split_batch(batch)
    module.zero_grad()
    module.training_step(x0, 0).backward()  # the same network trains unconditionally too
    assert module.net.style.weight.grad is None or not module.net.style.weight.grad.any()


def test_every_sampler_and_guidance_take_the_kind_with_its_null():
    net, styles = StyleNet().eval(), torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    cond, null = {STYLE: styles}, {STYLE: torch.zeros(4, 3)}
    common = {"seeds": range(4), "sampler": "ddim", "steps": 5}
    plain = sample(net, DIFFUSION, SHAPE, cond=cond, **common)
    zero = sample(net, DIFFUSION, SHAPE, cond=cond, guidance_scale=0.0, null_cond=null_style, **common)
    assert torch.equal(plain, zero)  # w = 0 is plain conditional sampling, bit for bit
    unconditional = sample(net, DIFFUSION, SHAPE, cond=null, **common)
    minus_one = sample(net, DIFFUSION, SHAPE, cond=cond, guidance_scale=-1.0, null_cond=null_style, **common)
    assert torch.allclose(minus_one, unconditional, atol=1e-5)  # w = -1 is the null's sampling
    assert not torch.allclose(plain, unconditional, atol=1e-3)  # the style matters
    x, t = torch.randn(4, *SHAPE), torch.tensor([3, 30, 60, 99])
    with torch.no_grad():
        expected = 3 * net(x, t, style=styles) - 2 * net(x, t, style=torch.zeros(4, 3))
        assert torch.allclose(GuidedModel(net, 2.0, null_style)(x, t, **cond), expected, atol=1e-6)
    for name in ("ancestral_respaced", "dpm_solver_pp_2m", "heun"):
        guided = make_sampler(name, DIFFUSION, steps=4, guidance_scale=2.0, null_cond=null_style)
        out = sample(net, DIFFUSION, SHAPE, seeds=range(4), sampler=guided, cond=cond)
        assert out.shape == (4, *SHAPE) and torch.isfinite(out).all()


def test_the_null_of_each_kind_refuses_conditioning_it_cannot_null():
    x, t = torch.randn(2, *SHAPE), torch.tensor([1, 2])
    with pytest.raises(ConfigError, match="needs class labels"):  # the default null is class labels'
        GuidedModel(StyleNet().eval(), 1.0)(x, t, style=torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="needs a style"):
        GuidedModel(StyleNet().eval(), 1.0, null_style)(x, t)
    labels = {"class_labels": torch.tensor([3, 1]), STYLE: torch.ones(2, 3)}
    assert null_labels(labels)["class_labels"].tolist() == [-1, -1]
    assert torch.equal(null_labels(labels)[STYLE], labels[STYLE])  # other kinds are kept
