"""Two CPU processes under DDP (gloo): our samplers survive Lightning's default sampler injection."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import Dataset

from ddpm.data import DiffusionDataModule, ResumableDistributedSampler
from tests.helpers import quiet_trainer


class Items(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.full((1, 1, 1), float(i))


class ItemsDataModule(DiffusionDataModule):
    @property
    def image_shape(self):
        return (1, 1, 1)

    def setup(self, stage=None):
        self.train_set, self.val_set = Items(40), Items(9)


class Dump(L.LightningModule):
    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.train_items: list[list[int]] = []
        self.val_items: list[int] = []

    def training_step(self, batch, batch_idx):
        self.train_items.append([int(v) for v in batch.flatten()])
        return (self.w * batch).mean()

    def validation_step(self, batch, batch_idx):
        self.val_items += [int(v) for v in batch.flatten()]

    def on_fit_end(self):
        loader = self.trainer.train_dataloader
        sampler = loader.sampler
        record = {
            "train": self.train_items,
            "val": self.val_items,
            "sampler": type(sampler).__name__,
            "seed": sampler.seed,
            "drop_last": sampler.drop_last,
            "epoch": sampler.epoch,
        }
        Path(self.out, f"rank{self.global_rank}.json").write_text(json.dumps(record))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("use_distributed_sampler", [True, False])
def test_ddp_two_cpu_ranks(tmp_path, use_distributed_sampler):
    dm = ItemsDataModule(batch_size=4, seed=5, random_flip=False)
    trainer = quiet_trainer(
        devices=2,
        strategy="ddp_spawn",
        max_epochs=2,
        num_sanity_val_steps=0,
        use_distributed_sampler=use_distributed_sampler,
    )
    trainer.fit(Dump(str(tmp_path)), datamodule=dm)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, rec in enumerate(ranks):
        assert rec["sampler"] == ResumableDistributedSampler.__name__  # not replaced by Lightning
        assert (rec["seed"], rec["drop_last"], rec["epoch"]) == (5, True, 1)
        expected = []
        for epoch in (0, 1):
            loader = dm.build_train_dataloader(world_size=2, rank=r)
            loader.sampler.set_epoch(epoch)
            expected += [[int(v) for v in b.flatten()] for b in loader]
        assert rec["train"] == expected
    for epoch_slice in (slice(0, 5), slice(5, 10)):
        a = {v for b in ranks[0]["train"][epoch_slice] for v in b}
        b = {v for b in ranks[1]["train"][epoch_slice] for v in b}
        assert a.isdisjoint(b) and a | b == set(range(40))
    assert set(ranks[0]["val"]) | set(ranks[1]["val"]) == set(range(9))
