"""FID and IS statistics against independent float64 computations (scipy sqrtm, numpy, torch-fidelity)."""

import numpy as np
import pytest
import scipy.linalg
import torch
from torch_fidelity.metric_isc import isc_features_to_metric

from ddpm.metrics.statistics import (
    FeatureStatistics,
    InceptionStatistics,
    frechet_distance,
    is_split_assignment,
)


def scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """The pytorch-fid / TF reference formula, in float64 with scipy's sqrtm."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean, _ = scipy.linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def features(n, dim, seed, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    return (rng.normal(size=(n, dim)) @ mix) * scale + shift


@pytest.mark.parametrize("dim", [8, 64])
def test_fid_matches_scipy_sqrtm(dim):
    f1 = features(400, dim, 0)
    f2 = features(300, dim, 1, shift=0.3, scale=1.2)
    a, b = FeatureStatistics(dim), FeatureStatistics(dim)
    for chunk in np.array_split(f1, 7):  # chunked float32 updates accumulate in float64
        a.update(torch.from_numpy(chunk))
    b.update(torch.from_numpy(f2))
    np.testing.assert_allclose(a.mean().numpy(), f1.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.cov().numpy(), np.cov(f1, rowvar=False), rtol=1e-9, atol=1e-12)
    ours = frechet_distance(a.mean(), a.cov(), b.mean(), b.cov())
    assert ours == pytest.approx(scipy_fid(f1, f2), rel=1e-7, abs=1e-9)
    assert ours > 0.1


def test_fid_of_identical_sets_is_zero_and_symmetric():
    f1, f2 = features(200, 16, 0), features(200, 16, 1, shift=0.5)
    a, b = FeatureStatistics(16), FeatureStatistics(16)
    a.update(torch.from_numpy(f1))
    b.update(torch.from_numpy(f2))
    assert frechet_distance(a.mean(), a.cov(), a.mean(), a.cov()) == pytest.approx(0.0, abs=1e-9)
    ab = frechet_distance(a.mean(), a.cov(), b.mean(), b.cov())
    ba = frechet_distance(b.mean(), b.cov(), a.mean(), a.cov())
    assert ab == pytest.approx(ba, rel=1e-10)


def numpy_inception_score(logits: np.ndarray, splits: int, order: np.ndarray) -> tuple[float, float]:
    """Independent IS: softmax in float64, chunk i of the ordered logits, exp(mean KL(p || mean p))."""
    x = logits[order].astype(np.float64)
    x = x - x.max(1, keepdims=True)
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    n = len(p)
    scores = []
    for i in range(splits):
        chunk = p[i * n // splits : (i + 1) * n // splits]
        q = chunk.mean(0, keepdims=True)
        scores.append(np.exp((chunk * (np.log(chunk) - np.log(q))).sum(1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


@pytest.mark.parametrize("shuffle_seed", [2020, None])
def test_inception_score_matches_independent_computation(shuffle_seed):
    n, classes = 103, 20
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(n, classes)) * 3
    stats = InceptionStatistics(n, (10, 1), shuffle_seed, feature_dim=4, num_classes=classes)
    # Out-of-order updates of uneven size, as ranks and shards deliver them.
    order = rng.permutation(n)
    for chunk in np.array_split(order, 5):
        stats.update(
            torch.zeros(len(chunk), 4), torch.from_numpy(logits[chunk]).float(), torch.from_numpy(chunk)
        )
    perm = np.random.RandomState(shuffle_seed).permutation(n) if shuffle_seed is not None else np.arange(n)
    logits32 = torch.from_numpy(logits).float().double().numpy()
    for splits in (10, 1):
        mean, std = stats.inception_score(splits)
        ref_mean, ref_std = numpy_inception_score(logits32, splits, perm)
        assert mean == pytest.approx(ref_mean, rel=1e-10)
        assert std == pytest.approx(ref_std, rel=1e-8, abs=1e-10)
    if shuffle_seed == 2020:  # the same numbers as torch-fidelity's own implementation
        tf = isc_features_to_metric(torch.from_numpy(logits).float(), splits=10, shuffle=True, rng_seed=2020)
        assert stats.inception_score(10)[0] == pytest.approx(tf["inception_score_mean"], rel=1e-10)
        assert stats.inception_score(10)[1] == pytest.approx(tf["inception_score_std"], rel=1e-8)


def test_split_assignment_partitions_the_indices():
    split_of = is_split_assignment(57, 10, 2020)
    counts = torch.bincount(split_of, minlength=10)
    assert counts.sum() == 57 and counts.min() >= 5 and counts.max() <= 6
    assert torch.equal(is_split_assignment(10, 1, 2020), torch.zeros(10, dtype=torch.long))


def test_missing_or_duplicated_images_are_detected():
    stats = InceptionStatistics(6, (2, 1), None, feature_dim=3, num_classes=5)
    stats.update(torch.randn(5, 3), torch.randn(5, 5), torch.arange(5))
    with pytest.raises(RuntimeError, match="skipped or counted twice"):
        stats.check_complete()
    with pytest.raises(RuntimeError, match="skipped or counted twice"):
        stats.inception_score(2)
    with pytest.raises(IndexError):
        stats.update(torch.randn(1, 3), torch.randn(1, 5), torch.tensor([6]))


def test_state_dict_round_trip():
    stats = InceptionStatistics(8, (2, 1), 2020, feature_dim=3, num_classes=5)
    stats.update(torch.randn(8, 3), torch.randn(8, 5), torch.arange(8))
    again = InceptionStatistics.from_state_dict(stats.state_dict())
    assert again.inception_score(2) == stats.inception_score(2)
    assert torch.equal(again.features.outer, stats.features.outer)
