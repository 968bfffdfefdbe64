from types import SimpleNamespace

import pytest
import torch

from ddpm.data import DigitsDataModule
from ddpm.data.transforms import random_flip_batch


def stub_trainer(step: int = 0, rank: int = 0, training: bool = True) -> SimpleNamespace:
    return SimpleNamespace(training=training, global_step=step, global_rank=rank, world_size=1)


def flipped_mask(batch: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Which images of ``out`` are ``batch`` mirrored along the width axis (and not identical)."""
    same = (out == batch).flatten(1).all(1)
    mirrored = (out == batch.flip(-1)).flatten(1).all(1)
    assert torch.all(same | mirrored), "every image is either kept or mirrored along W"
    return mirrored & ~same


@pytest.fixture
def batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(64, 3, 5, 7, generator=g) * 2 - 1  # W=7 != H=5: a wrong axis would show


def test_flip_is_a_function_of_seed_step_and_rank(batch):
    dm = DigitsDataModule(batch_size=64, random_flip=True, seed=11)
    dm.trainer = stub_trainer(step=5, rank=0)
    out = dm.on_after_batch_transfer(batch.clone(), 0)
    mask = flipped_mask(batch, out)
    assert 10 < int(mask.sum()) < 54  # about half
    torch.testing.assert_close(out[mask], batch[mask].flip(-1), rtol=0, atol=0)
    torch.testing.assert_close(out[~mask], batch[~mask], rtol=0, atol=0)
    # same (seed, step, rank) -> same subset, also from a fresh DataModule
    again = DigitsDataModule(batch_size=64, random_flip=True, seed=11)
    again.trainer = stub_trainer(step=5, rank=0)
    assert torch.equal(again.on_after_batch_transfer(batch.clone(), 0), out)
    # another step, rank or seed -> another subset
    for trainer in (stub_trainer(step=6, rank=0), stub_trainer(step=5, rank=1)):
        dm.trainer = trainer
        assert not torch.equal(flipped_mask(batch, dm.on_after_batch_transfer(batch.clone(), 0)), mask)
    other_seed = DigitsDataModule(batch_size=64, random_flip=True, seed=12)
    other_seed.trainer = stub_trainer(step=5, rank=0)
    assert not torch.equal(flipped_mask(batch, other_seed.on_after_batch_transfer(batch.clone(), 0)), mask)


def test_flip_is_a_noop_outside_training_or_when_disabled(batch):
    dm = DigitsDataModule(batch_size=64, random_flip=True)
    dm.trainer = stub_trainer(step=3, training=False)
    assert torch.equal(dm.on_after_batch_transfer(batch.clone(), 0), batch)
    dm.trainer = None
    assert torch.equal(dm.on_after_batch_transfer(batch.clone(), 0), batch)
    off = DigitsDataModule(batch_size=64)  # digits: no flip by default
    assert off.random_flip is False
    off.trainer = stub_trainer(step=3)
    assert torch.equal(off.on_after_batch_transfer(batch.clone(), 0), batch)


def test_random_flip_batch_rejects_non_image_batches():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        random_flip_batch(torch.zeros(3, 4, 4), torch.Generator())
