"""A run resumed mid-epoch from a checkpoint sees the batches (order, flips) of an uninterrupted one."""

import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from ddpm.data import DigitsDataModule
from tests.helpers import quiet_trainer


class Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[int, torch.Tensor]] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.seen.append((self.global_step, batch.detach().clone()))
        return (self.w * batch).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def fit(max_steps: int, num_workers: int, ckpt_path=None, callbacks=()) -> Recorder:
    dm = DigitsDataModule(batch_size=128, image_size=8, random_flip=True, seed=3, num_workers=num_workers)
    model = Recorder()
    trainer = quiet_trainer(
        devices=1,
        max_steps=max_steps,
        limit_val_batches=0,
        enable_checkpointing=bool(callbacks),
        callbacks=list(callbacks),
        use_distributed_sampler=False,
    )
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resumed_run_repeats_uninterrupted_run(tmp_path, num_workers):
    # 1617 training digits / 128 = 12 batches per epoch: stop 2 batches into the second epoch
    reference = fit(16, num_workers)
    assert [s for s, _ in reference.seen] == list(range(16))

    checkpoint = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=14, save_top_k=-1)
    first = fit(14, num_workers, callbacks=[checkpoint])
    (ckpt,) = tmp_path.glob("*.ckpt")
    state = torch.load(ckpt, weights_only=False)["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert state[0]["epoch"] == 1 and state[0]["batches"] == 2

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*dataloader is not resumable.*")
        resumed = fit(16, num_workers, ckpt_path=ckpt)
    seen = first.seen + resumed.seen
    assert [s for s, _ in seen] == list(range(16))
    for (step, expected), (_, got) in zip(reference.seen, seen):
        assert torch.equal(expected, got), f"step {step} differs"
    # flips happened: some batch differs from its unflipped digits
    assert any(not torch.equal(b, b.flip(-1)) for _, b in reference.seen)
