"""Training behaviour: a tiny model overfits, metrics are logged, and resume repeats training exactly."""

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ddpm.cli.ddpm_train import train
from ddpm.diffusion import GaussianDiffusion, SimpleLoss
from ddpm.lightning import DDPMLitModule
from tests.helpers import TINY, compose_train, quiet_trainer, tiny_unet


def test_tiny_unet_overfits_a_fixed_batch():
    """Overfitting one fixed batch (images, t and noise) drives L_simple down by a large factor."""
    torch.manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)).round() * 2 - 1
    net = tiny_unet(1, attn_resolutions=(), scale=None)
    module = DDPMLitModule(net, GaussianDiffusion(num_timesteps=50), warmup_steps=0)
    loss_fn = SimpleLoss()

    def batch_loss():
        return loss_fn(module.net, module.diffusion, x0, torch.Generator().manual_seed(123)).mean()

    before = batch_loss().item()
    optimizer = torch.optim.Adam(module.net.parameters(), lr=3e-3)
    for _ in range(150):
        loss = batch_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = batch_loss().item()
    assert before == pytest.approx(1.0, rel=0.3)  # zero-initialised output predicts eps = 0
    assert after < before / 20, (before, after)


def test_training_logs_loss_lr_grad_norm_and_val_loss(tmp_path):
    cfg = compose_train([*TINY, "trainer.max_steps=3", "trainer.val_check_interval=3"], tmp_path)
    metrics, objects = train(cfg)
    for key in ("train/loss", "train/grad_norm", "val/loss", "val/loss_ema"):
        assert key in metrics and torch.isfinite(torch.tensor(metrics[key])), key
    assert objects["trainer"].global_step == 3


def _run(tmp_path: Path, name: str, overrides: list[str]):
    out = tmp_path / name
    cfg = compose_train(
        [
            *TINY,
            "model.dropout=0.1",
            "module.warmup_steps=2",
            "module.ema_decay=0.9",
            "data.batch_size=8",
            "trainer.limit_train_batches=4",
            "trainer.val_check_interval=null",
            "trainer.limit_val_batches=0",
            *overrides,
        ],
        out,
    )
    _, objects = train(cfg)
    return objects


def _assert_same_state(a, b):
    sa, sb = a["module"].state_dict(), b["module"].state_dict()
    assert sa.keys() == sb.keys()
    assert any(k.startswith("ema.module.") for k in sa)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), f"{key} differs after resume"
    oa = a["trainer"].optimizers[0].state_dict()["state"]
    ob = b["trainer"].optimizers[0].state_dict()["state"]
    for idx in oa:
        for field in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(oa[idx][field], ob[idx][field]), f"optimizer {field} differs"


@pytest.mark.parametrize("half", [4, 3], ids=["epoch-boundary", "mid-epoch"])
def test_resume_repeats_uninterrupted_training_exactly(tmp_path, half):
    """N steps straight == N/2 steps, save, resume for the rest (weights, EMA, Adam state)."""
    total = 8
    # the checkpoint a user resumes from: written by ModelCheckpoint during the straight run
    checkpointing = [
        "+callbacks.ckpt._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.ckpt.dirpath={tmp_path / 'ckpts'}",
        f"+callbacks.ckpt.every_n_train_steps={half}",
        "+callbacks.ckpt.save_top_k=-1",
        "+callbacks.ckpt.filename=half",
    ]
    straight = _run(tmp_path, "straight", [f"trainer.max_steps={total}", *checkpointing])
    ckpt = tmp_path / "ckpts" / "half.ckpt"
    resumed = _run(tmp_path, "resumed", [f"trainer.max_steps={total}", f"ckpt_path={ckpt}"])
    assert resumed["trainer"].global_step == total
    _assert_same_state(straight, resumed)


# ---------------------------------------------------------------------- conditioning
KEYWORD_CALLS: list[tuple[bool, int]] = []  # (training?, batch size) of every call (the EMA copy too)


class KeywordNet(nn.Module):
    """A tiny U-Net called as ``net(x_t, t, label=...)``; it checks that the label matches the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.unet = tiny_unet(1, ch_mult=(1,), attn_resolutions=(), scale=None)
        self.embed = nn.Embedding(10, 1)

    def forward(self, x: Tensor, t: Tensor, *, label: Tensor) -> Tensor:
        assert label.shape == (x.shape[0],) and t.shape == (x.shape[0],)
        KEYWORD_CALLS.append((self.training, x.shape[0]))
        return self.unet(x, t) + self.embed(label)[:, :, None, None]


class LabelledImages(Dataset):
    """Five 8x8 images with a class label, as ``(x0, {"label": y})`` or ``{"x0": x0, "label": y}``."""

    def __init__(self, as_dict: bool) -> None:
        self.images = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
        self.as_dict = as_dict

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor]] | dict[str, Tensor]:
        label = torch.tensor(i % 10)
        return {"x0": self.images[i], "label": label} if self.as_dict else (self.images[i], {"label": label})


@pytest.mark.parametrize("as_dict", [False, True], ids=["pair", "dict"])
def test_conditioning_reaches_the_network_in_training_and_validation(as_dict):
    KEYWORD_CALLS.clear()
    module = DDPMLitModule(KeywordNet(), GaussianDiffusion(num_timesteps=20), warmup_steps=0, ema_decay=0.9)
    loader = DataLoader(LabelledImages(as_dict), batch_size=3)  # batches of 3 and 2
    trainer = quiet_trainer(max_steps=2, num_sanity_val_steps=0)
    trainer.fit(module, loader, loader)
    assert trainer.global_step == 2
    assert [size for training, size in KEYWORD_CALLS if training] == [3, 2]
    # validation after the epoch: the raw and the EMA weights, on both batches
    assert sorted(size for training, size in KEYWORD_CALLS if not training) == [2, 2, 3, 3]
    assert torch.isfinite(trainer.callback_metrics["val/loss_ema"])
    out = module(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), label=torch.tensor([3, 4]))
    assert out.shape == (2, 1, 8, 8)
