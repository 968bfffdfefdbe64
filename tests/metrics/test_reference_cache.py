"""Reference-statistics cache: hit, miss on any key change, corrupt files rebuilt, atomic writes."""

import dataclasses

import pytest
import torch

from ddpm.metrics.features import accumulate
from ddpm.metrics.reference_cache import (
    STATISTICS,
    ReferenceKey,
    load_cached,
    reference_features,
    reference_statistics,
    save_cached,
)
from ddpm.metrics.statistics import InceptionStatistics

from .helpers import RandomImages, StubExtractor


def _stats(dataset, extractor, cache_dir, **kwargs):
    kwargs.setdefault("batch_size", 4)
    return reference_statistics(
        dataset, kwargs.pop("name", "fake"), kwargs.pop("split", "train"), extractor, cache_dir, **kwargs
    )


def test_statistics_equal_a_direct_computation(tmp_path):
    dataset, extractor = RandomImages(10), StubExtractor()
    stats, key, hit = _stats(dataset, extractor, tmp_path)
    assert not hit and key.num_images == 10 and key.image_shape == (3, 8, 8)
    direct = InceptionStatistics(10, (10, 1), 2020, feature_dim=16, num_classes=10)
    accumulate(direct, extractor, [(torch.arange(10), dataset.images)])
    # (float32 features of batches of 4 vs 10 differ in the last bits)
    torch.testing.assert_close(stats.features.outer, direct.features.outer, rtol=1e-5, atol=1e-6)
    assert stats.inception_score(10) == pytest.approx(direct.inception_score(10), rel=1e-5)


def test_cache_hit_does_not_recompute(tmp_path):
    dataset, extractor = RandomImages(10), StubExtractor()
    first, key, hit = _stats(dataset, extractor, tmp_path)
    assert not hit and (tmp_path / key.filename()).is_file()
    calls = extractor.calls
    second, key2, hit2 = _stats(dataset, extractor, tmp_path)
    assert hit2 and key2 == key and extractor.calls == calls
    assert torch.equal(second.features.total, first.features.total)
    assert second.inception_score(1) == first.inception_score(1)


@pytest.mark.parametrize(
    "change",
    ["dataset", "split", "resolution", "num_images", "inception", "pixels"],
)
def test_any_key_change_is_a_miss(tmp_path, change):
    dataset, extractor = RandomImages(10), StubExtractor()
    _, key, _ = _stats(dataset, extractor, tmp_path)
    kwargs = {}
    if change == "dataset":
        kwargs["name"] = "other"
    elif change == "split":
        kwargs["split"] = "test"
    elif change == "resolution":
        dataset = RandomImages(10, shape=(3, 16, 16))
    elif change == "num_images":
        kwargs["num_images"] = 9
    elif change == "inception":
        extractor = StubExtractor(seed=1)  # another weights file -> another sha256
    elif change == "pixels":
        dataset = RandomImages(10, seed=5)  # same name, size and shape; other images
    calls = extractor.calls
    _, new_key, hit = _stats(dataset, extractor, tmp_path, **kwargs)
    assert not hit and new_key != key and new_key.filename() != key.filename()
    assert extractor.calls > calls
    assert len(list(tmp_path.glob("*.pt"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tamper", "other_key"])
def test_corrupt_cache_is_rebuilt_not_trusted(tmp_path, damage):
    dataset, extractor = RandomImages(10), StubExtractor()
    good, key, _ = _stats(dataset, extractor, tmp_path)
    path = tmp_path / key.filename()
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "garbage":
        path.write_bytes(b"not a torch file")
    elif damage == "tamper":  # valid file, contents changed behind the checksum's back
        payload = torch.load(path, weights_only=True)
        payload["stats"]["tensors"][1][0] += 1.0
        torch.save(payload, path)
    elif damage == "other_key":  # a file renamed from another key
        other = dataclasses.replace(key, num_images=9)
        save_cached(path, STATISTICS, other, good)
    assert load_cached(path, STATISTICS, key) is None
    calls = extractor.calls
    rebuilt, _, hit = _stats(dataset, extractor, tmp_path)
    assert not hit and extractor.calls > calls
    assert torch.equal(rebuilt.features.total, good.features.total)
    assert load_cached(path, STATISTICS, key) is not None  # and the file is valid again


def test_no_temporary_files_are_left_and_no_cache_dir_means_no_file(tmp_path):
    dataset, extractor = RandomImages(6), StubExtractor()
    _stats(dataset, extractor, tmp_path / "cache")
    assert [p.name.startswith(".") for p in (tmp_path / "cache").iterdir()] == [False]
    _, _, hit = _stats(dataset, extractor, None)
    assert not hit


def test_key_digest_is_stable():
    key = ReferenceKey("cifar10", "train", (3, 32, 32), 50000, "ab" * 32, "cd" * 16)
    assert key.digest() == ReferenceKey("cifar10", "train", (3, 32, 32), 50000, "ab" * 32, "cd" * 16).digest()
    assert key.filename().startswith("cifar10-train-3x32x32-n50000-")


def test_reference_features_are_cached_beside_the_statistics(tmp_path):
    dataset, extractor = RandomImages(10), StubExtractor()
    stats_only, key, _ = _stats(dataset, extractor, tmp_path)  # an existing statistics cache...
    calls = extractor.calls
    first = _stats(dataset, extractor, tmp_path, with_features=True)  # ...gains features in one pass
    assert not first.hit and extractor.calls > calls
    assert first.features.shape == (10, 16) and first.features.dtype == torch.float32
    torch.testing.assert_close(first.features, extractor(dataset.images)[0], rtol=1e-5, atol=1e-6)
    assert torch.equal(first.stats.features.outer, stats_only.features.outer)  # the cached stats are kept
    assert (tmp_path / key.features_filename()).is_file()
    calls = extractor.calls
    second = _stats(dataset, extractor, tmp_path, with_features=True)
    assert second.hit and extractor.calls == calls  # the second call hits the cache
    assert torch.equal(second.features, first.features)
    assert torch.equal(second.stats.features.total, first.stats.features.total)
    # a damaged feature file is rebuilt, never trusted
    (tmp_path / key.features_filename()).write_bytes(b"garbage")
    third = _stats(dataset, extractor, tmp_path, with_features=True)
    assert not third.hit and extractor.calls > calls and torch.equal(third.features, first.features)


def _second_network(seed: int = 3) -> StubExtractor:
    """A stand-in for VGG-16: a second feature network with its own feature space and weights."""
    extractor = StubExtractor(dim=12, seed=seed)
    extractor.feature_space = "stub_fc"
    return extractor


def test_a_second_feature_space_is_cached_beside_the_statistics_under_its_own_key(tmp_path):
    dataset, inception, second = RandomImages(10), StubExtractor(), _second_network()
    _stats(dataset, inception, tmp_path, with_features=True)
    first = reference_features(dataset, "fake", "train", second, tmp_path, num_images=9, batch_size=4)
    assert not first.hit and first.features.shape == (9, 12) and first.features.dtype == torch.float32
    torch.testing.assert_close(first.features, second(dataset.images[:9])[0], rtol=1e-5, atol=1e-6)
    assert first.key.weights_sha256 == second.weights_sha256 and first.key.feature_space == "stub_fc"
    assert (
        first.key.filename().endswith("-stub_fc-features.pt") and (tmp_path / first.key.filename()).is_file()
    )
    assert len(list(tmp_path.glob("*.pt"))) == 3  # the Inception's statistics and features are untouched
    calls = second.calls
    again = reference_features(dataset, "fake", "train", second, tmp_path, num_images=9, batch_size=4)
    assert again.hit and second.calls == calls and torch.equal(again.features, first.features)
    other = reference_features(dataset, "fake", "train", _second_network(seed=4), tmp_path, num_images=9)
    assert not other.hit and other.key.filename() != first.key.filename()  # other weights: another key
    (tmp_path / first.key.filename()).write_bytes(b"garbage")  # damaged: rebuilt, never trusted
    rebuilt = reference_features(dataset, "fake", "train", second, tmp_path, num_images=9, batch_size=4)
    assert not rebuilt.hit and torch.equal(rebuilt.features, first.features)
    assert reference_features(dataset, "fake", "train", second, None, num_images=9).hit is False
