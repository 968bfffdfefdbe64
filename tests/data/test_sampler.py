from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import Dataset, DistributedSampler, SequentialSampler

from ddpm.data import DiffusionDataModule, ResumableDataLoader
from ddpm.errors import ConfigError


class IndexDataset(Dataset):
    """Item i is a [1, 1, 1] tensor holding i, so batches reveal the order."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.full((1, 1, 1), float(i))


class IndexDataModule(DiffusionDataModule):
    def __init__(self, n_train: int = 50, n_val: int = 11, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_train, self.n_val = n_train, n_val

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, 1, 1)

    def setup(self, stage: str | None = None) -> None:
        self.train_set, self.val_set = IndexDataset(self.n_train), IndexDataset(self.n_val)


def order(loader) -> list[int]:
    return [int(v) for batch in loader for v in batch.flatten()]


def fake_trainer(world_size: int = 1, rank: int = 0) -> SimpleNamespace:
    return SimpleNamespace(world_size=world_size, global_rank=rank, training=True, global_step=0)


def test_two_ranks_see_disjoint_shards_covering_the_data():
    dm = IndexDataModule(n_train=50, batch_size=5, seed=7)
    dm.setup()
    loaders = [dm.build_train_dataloader(world_size=2, rank=r) for r in (0, 1)]
    orders = [order(dl) for dl in loaders]
    assert len(orders[0]) == len(orders[1]) == 25
    assert set(orders[0]).isdisjoint(orders[1])
    assert sorted(orders[0] + orders[1]) == list(range(50))
    # the same through a trainer-like object
    dm.trainer = fake_trainer(world_size=2, rank=1)
    assert order(dm.train_dataloader()) == orders[1]
    sampler = dm.train_dataloader().sampler
    assert isinstance(sampler, DistributedSampler)
    assert (sampler.num_replicas, sampler.rank, sampler.shuffle, sampler.seed, sampler.drop_last) == (
        2,
        1,
        True,
        7,
        True,
    )


def test_drop_last_on_uneven_data():
    dm = IndexDataModule(n_train=23, batch_size=4)
    dm.setup()
    shards = [order(dm.build_train_dataloader(2, r)) for r in (0, 1)]
    # 11 items per rank (DistributedSampler drops the 23rd), then 2 full batches of 4 (drop_last)
    assert [len(s) for s in shards] == [8, 8]
    assert set(shards[0]).isdisjoint(shards[1])


def test_order_is_a_function_of_seed_and_epoch():
    dm = IndexDataModule(n_train=40, batch_size=4, seed=3)
    dm.setup()
    first = order(dm.train_dataloader())
    assert sorted(first) == list(range(40)) and first != list(range(40))
    assert order(dm.train_dataloader()) == first  # same epoch, fresh loader: same order
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    second = order(loader)
    assert second != first and sorted(second) == list(range(40))
    other = IndexDataModule(n_train=40, batch_size=4, seed=4)
    other.setup()
    assert order(other.train_dataloader()) != first


def test_val_loader_is_sequential_and_sharded_under_ddp():
    dm = IndexDataModule(n_val=11, batch_size=4, val_batch_size=3)
    dm.setup()
    single = dm.val_dataloader()
    assert isinstance(single.sampler, SequentialSampler)
    assert order(single) == list(range(11))
    assert [b.shape[0] for b in single] == [3, 3, 3, 2]
    shards = [order(dm.build_val_dataloader(2, r)) for r in (0, 1)]
    assert set(shards[0]) | set(shards[1]) == set(range(11))
    assert len(shards[0]) == len(shards[1]) == 6  # padded by repeating one item


def test_resume_mid_epoch_continues_the_same_order():
    dm = IndexDataModule(n_train=40, batch_size=4, seed=1)
    dm.setup()
    reference = dm.train_dataloader()
    reference.sampler.set_epoch(2)
    full = [batch.flatten().tolist() for batch in reference]

    interrupted = dm.train_dataloader()
    interrupted.sampler.set_epoch(2)
    iterator = iter(interrupted)
    seen = [next(iterator).flatten().tolist() for _ in range(3)]
    state = interrupted.state_dict()
    assert state["epoch"] == 2 and state["batches"] == 3

    resumed = dm.train_dataloader()  # a new process: a fresh loader whose sampler is at epoch 0
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state  # restored, not iterated yet
    resumed.sampler.set_epoch(2)  # what Lightning's fit loop does before the first batch
    rest = [batch.flatten().tolist() for batch in resumed]
    assert seen + rest == full
    assert len(resumed) == 10  # the length Lightning counts with is unchanged
    assert resumed.state_dict()["batches"] == 10
    # the skip is one-shot: the next epoch is complete
    resumed.sampler.set_epoch(3)
    assert len(list(resumed)) == 10


def test_resume_state_of_another_epoch_or_setup_is_ignored():
    dm = IndexDataModule(n_train=40, batch_size=4)
    dm.setup()
    loader = dm.train_dataloader()
    loader.load_state_dict(loader.state_dict() | {"epoch": 0, "batches": 10})
    loader.sampler.set_epoch(1)  # the saved epoch had ended: Lightning starts the next one
    assert len(list(loader)) == 10
    with pytest.warns(UserWarning, match="not resuming the data order"):
        loader.load_state_dict(loader.state_dict() | {"batch_size": 8, "batches": 2})
    assert len(list(loader)) == 10


def test_loader_is_lazy_so_set_epoch_after_iter_counts():
    """Lightning creates the iterator before calling set_epoch on resume."""
    dm = IndexDataModule(n_train=20, batch_size=4, num_workers=1)
    dm.setup()
    expected = dm.train_dataloader()
    expected.sampler.set_epoch(5)
    loader = dm.train_dataloader()
    assert isinstance(loader, ResumableDataLoader)
    iterator = iter(loader)
    loader.sampler.set_epoch(5)
    assert [int(v) for b in iterator for v in b.flatten()] == order(expected)


def test_too_small_dataset_is_a_config_error():
    dm = IndexDataModule(n_train=6, batch_size=4)
    dm.setup()
    with pytest.raises(ConfigError, match="fewer than one batch"):
        dm.build_train_dataloader(world_size=2, rank=0)
