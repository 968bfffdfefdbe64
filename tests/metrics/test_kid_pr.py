"""KID and precision/recall against torch-fidelity's own functions on the same feature arrays."""

import numpy as np
import pytest
import torch
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from ddpm.metrics.kid_pr import kid, knn_radii, mmd2_unbiased, precision_recall


def feature_sets(n_1=240, n_2=200, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n_1, dim)).astype(np.float32)
    b = (rng.normal(size=(n_2, dim)) * 1.2 + 0.3).astype(np.float32)
    return torch.from_numpy(a), torch.from_numpy(b)


def tf_kid(a, b, subsets, subset_size):
    out = kid_features_to_metric(
        a, b, kid_subsets=subsets, kid_subset_size=subset_size, rng_seed=2020, verbose=False
    )
    return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]


def tf_prc(a, b, k=3):
    out = prc_features_to_metric(
        a, b, prc_neighborhood=k, prc_batch_size=10000, save_cpu_ram=False, verbose=False
    )
    return out["precision"], out["recall"]


@pytest.mark.parametrize("subset_size", [50, 1000])  # 1000 > n: subsets of min(1000, n) features
def test_kid_equals_torch_fidelity(subset_size, caplog):
    a, b = feature_sets()
    with caplog.at_level("WARNING", logger="ddpm.metrics.kid_pr"):
        mean, std = kid(a, b, subsets=15, subset_size=subset_size)
    # fewer features than the subset size: torch-fidelity refuses; here a warning names the m used
    assert ("subsets of 200 features, fewer than kid_subset_size=1000" in caplog.text) == (subset_size > 200)
    ref_mean, ref_std = tf_kid(a, b, 15, min(subset_size, 200))
    assert mean == pytest.approx(ref_mean, rel=1e-5, abs=1e-7)  # torch-fidelity sums in float32
    assert std == pytest.approx(ref_std, rel=1e-4, abs=1e-7)
    assert mean > 0.01


def test_mmd_of_one_set_with_itself_is_small_and_the_estimator_unbiased():
    a, _ = feature_sets()
    x, y = a[:100], a[100:200]  # two samples of one distribution: the unbiased estimate is ~0
    k = lambda u, v: (u.double() @ v.double().T / u.shape[1] + 1) ** 3
    m = 100
    direct = (k(x, x).sum() - k(x, x).trace()) / (m * (m - 1))
    direct += (k(y, y).sum() - k(y, y).trace()) / (m * (m - 1)) - 2 * k(x, y).mean()
    assert float(mmd2_unbiased(x, y)) == pytest.approx(float(direct), rel=1e-12)
    assert abs(float(mmd2_unbiased(x, y))) < 0.05


@pytest.mark.parametrize("k", [3, 5])
def test_precision_recall_equal_torch_fidelity(k):
    a, b = feature_sets()
    assert precision_recall(a, b, k=k, batch=37) == pytest.approx(tf_prc(a, b, k), abs=1e-7)


def test_blocks_do_not_change_the_radii():
    a, _ = feature_sets(n_1=90)
    full = knn_radii(a, 3, batch=1000)
    direct = torch.cdist(a.double(), a.double()).pow(2).kthvalue(4, dim=1).values
    torch.testing.assert_close(full, direct, rtol=1e-9, atol=1e-9)
    # (float64 matmul blocks change the last bits only)
    torch.testing.assert_close(knn_radii(a, 3, batch=7), full, rtol=1e-12, atol=1e-12)


def test_kid_refuses_fewer_than_two_features():
    a, b = feature_sets(n_1=40, n_2=30)
    with pytest.raises(ValueError, match="at least 2"):
        kid(a[:1], b, subsets=2)
