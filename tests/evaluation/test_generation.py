"""Sample i depends only on (weights, sampler, seed + i); shards resume after an interruption."""

import numpy as np
import pytest
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.evaluation.generation import (
    GenerationSettings,
    generate,
    generate_shards,
    read_images,
    sample_store,
)
from ddpm.io.shards import ShardStore
from ddpm.sampling import AncestralSampler
from ddpm.utils.fingerprint import describe_sampler, fingerprint, module_digest
from tests.helpers import tiny_unet

SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def model():
    return tiny_unet(3, 8)


@pytest.fixture(scope="module")
def sampler():
    return AncestralSampler(GaussianDiffusion(num_timesteps=8))


def _all(model, sampler, indices, seed, batch_size):
    batches = list(generate(model, sampler, SHAPE, indices, seed=seed, batch_size=batch_size))
    return torch.cat([i for i, _ in batches]), torch.cat([x for _, x in batches])


def test_same_samples_for_batch_sizes_3_and_8(model, sampler):
    idx3, x3 = _all(model, sampler, range(8), seed=0, batch_size=3)
    idx8, x8 = _all(model, sampler, range(8), seed=0, batch_size=8)
    assert torch.equal(idx3, idx8) and x3.dtype == torch.uint8 and x3.shape == (8, *SHAPE)
    assert torch.equal(x3, x8)
    assert x3.float().std() > 10  # real, varied images, not a constant


def test_sample_depends_only_on_seed_plus_index(model, sampler):
    _, full = _all(model, sampler, range(8), seed=0, batch_size=4)
    _, tail = _all(model, sampler, [6, 5, 7], seed=0, batch_size=2)  # other order, other batches
    assert torch.equal(tail, full[[6, 5, 7]])
    _, shifted = _all(model, sampler, [3], seed=2, batch_size=1)  # seed 2 + index 3 = seed 0 + index 5
    assert torch.equal(shifted[0], full[5])
    _, other = _all(model, sampler, range(2), seed=100, batch_size=2)
    assert not torch.equal(other, full[:2])


def _store(tmp_path, model, sampler, num=7, shard=3, seed=0):
    fp = fingerprint(weights=module_digest(model), sampler=describe_sampler(sampler), seed=seed, n=num)
    return sample_store(
        tmp_path / "samples", fp, GenerationSettings(num_samples=num, shard_size=shard, seed=seed)
    )


def _images(store):
    return torch.cat([x for _, x in read_images(store, range(store.num_shards))])


def _generate(model, sampler, store, batch_size):
    settings = GenerationSettings(
        num_samples=store.num_items, batch_size=batch_size, shard_size=store.shard_size
    )
    return generate_shards(model, sampler, store, image_shape=SHAPE, settings=settings, progress=False)


def test_shards_hold_all_samples_as_uint8_nhwc(tmp_path, model, sampler):
    store = _store(tmp_path, model, sampler)
    assert _generate(model, sampler, store, 2) == [0, 1, 2]
    with np.load(store.path(2)) as data:
        assert data["images"].shape == (1, 8, 8, 3) and data["images"].dtype == np.uint8
        assert data["indices"].tolist() == [6]
    _, direct = _all(model, sampler, range(7), 0, 7)
    assert torch.equal(_images(store), direct)


class Crash(Exception):
    pass


def test_interrupted_generation_resumes_to_identical_samples(tmp_path, model, sampler, monkeypatch):
    reference = _store(tmp_path / "uninterrupted", model, sampler)
    _generate(model, sampler, reference, 2)

    store = _store(tmp_path / "interrupted", model, sampler)
    original_write = ShardStore.write
    written = []

    def write_then_crash(self, shard, images):
        if len(written) == 1:
            raise Crash("killed")
        written.append(shard)
        return original_write(self, shard, images)

    monkeypatch.setattr(ShardStore, "write", write_then_crash)
    with pytest.raises(Crash):
        _generate(model, sampler, store, 2)
    monkeypatch.setattr(ShardStore, "write", original_write)
    assert [store.has(s) for s in range(3)] == [True, False, False]
    assert not list(store.folder.glob(".*tmp*"))  # no half-written shard

    calls = []
    monkeypatch.setattr(AncestralSampler, "sample", _counting(AncestralSampler.sample, calls))
    _generate(model, sampler, store, 3)  # another batch size
    assert len(calls) == 2  # shard 1 (3 samples) and shard 2 (1 sample); shard 0 was kept
    assert torch.equal(_images(store), _images(reference))
    calls.clear()
    _generate(model, sampler, store, 3)
    assert calls == []  # everything complete: nothing regenerated


def _counting(fn, calls):
    def wrapper(self, *args, **kwargs):
        calls.append(1)
        return fn(self, *args, **kwargs)

    return wrapper


@pytest.mark.parametrize("damage", ["truncate", "other_settings"])
def test_corrupt_or_foreign_shards_are_regenerated(tmp_path, model, sampler, damage):
    store = _store(tmp_path, model, sampler)
    _generate(model, sampler, store, 4)
    good = _images(store)
    if damage == "truncate":
        store.path(1).write_bytes(store.path(1).read_bytes()[:200])
    else:  # a shard left by a run with another seed in the same directory
        other = _store(tmp_path, model, sampler, seed=5)
        other.write(1, {"images": np.zeros((3, *SHAPE[1:], SHAPE[0]), dtype=np.uint8)})
    assert not store.has(1) and store.has(0)
    _generate(model, sampler, store, 4)
    assert torch.equal(_images(store), good)
