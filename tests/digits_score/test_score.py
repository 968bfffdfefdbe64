"""The digits score: a deterministic classifier of real digits, its IS analogue and Fréchet distance."""

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

import ddpm.digits_score as ds
from ddpm.data.digits import load_digit_images


@pytest.fixture(scope="module")
def splits():
    return ds.digit_splits()


def test_held_out_digits_are_classified_and_score_high(splits):
    _, _, val_x, val_y = splits
    accuracy = (ds.predict(val_x) == val_y).double().mean().item()
    assert accuracy >= 0.97
    score = ds.digits_score(val_x)
    assert score.score > 8.5 and score.confidence > 0.95 and score.class_balance > 0.95


def test_noise_and_blank_images_score_low():
    gen = torch.Generator().manual_seed(0)
    real = ds.digits_score(load_digit_images()[:500])
    noise = ds.digits_score(torch.rand(500, 1, 16, 16, generator=gen) * 2 - 1)
    blank = ds.digits_score(torch.full((500, 1, 16, 16), -1.0))
    assert noise.score < 4 < 9 < real.score
    assert blank.score < 1.01 and blank.class_balance < 0.15
    assert min(noise.frechet, blank.frechet) > 50 * real.frechet


def test_frechet_is_to_the_training_digits_and_the_baseline_is_held_out(splits):
    train_x, _, val_x, _ = splits
    assert abs(ds.digits_score(train_x).frechet) < 1e-6  # the reference itself
    held_out = ds.held_out_digits()
    assert (
        torch.equal(held_out, val_x)
        and held_out.shape[0] == 180
        and torch.equal(ds.held_out_digits(7), val_x[:7])
    )
    # a subset of the reference is far closer to it than fresh digits are: why the baseline is held out
    inside = ds.digits_score(train_x[:: len(train_x) // 180][:180]).frechet
    assert ds.digits_score(held_out).frechet > 2 * inside


# dead ReLU features make the covariances singular; sqrtm warns but its trace is still exact enough
@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_score_and_frechet_equal_numpy_scipy():
    """IS analogue with scipy's KL, Fréchet distance with scipy's sqrtm on numpy's float64 mean/cov."""
    images = load_digit_images()[::3][:300]
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    images = (images + 0.2 * noise).clamp(-1, 1)
    net = ds.digits_classifier()
    with torch.no_grad():
        feats = net.features(images).double().numpy()
        real = net.features(ds.digit_splits()[0]).double().numpy()  # the training digits
        probs = net(images).softmax(dim=1).double().numpy()
    marginal = probs.mean(axis=0)
    kl = np.array([scipy.stats.entropy(p, marginal) for p in probs])
    mu1, mu2 = feats.mean(0), real.mean(0)
    s1, s2 = np.cov(feats, rowvar=False), np.cov(real, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected_fd = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    got = ds.digits_score(images)
    assert got.score == pytest.approx(np.exp(kl.mean()), rel=1e-5)
    assert got.confidence == pytest.approx(probs.max(axis=1).mean(), rel=1e-5)
    assert got.class_balance == pytest.approx(np.exp(scipy.stats.entropy(marginal)) / 10, rel=1e-5)
    assert got.frechet == pytest.approx(expected_fd, rel=1e-4)


def test_training_is_deterministic(splits):
    x, y, _, _ = splits
    a = ds.train_classifier(x[:128], y[:128], epochs=1)
    b = ds.train_classifier(x[:128], y[:128], epochs=1)
    for p, q in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(p, q)


def test_predict_returns_labels_and_probabilities(splits):
    _, _, val_x, _ = splits
    probs = ds.predict_proba(val_x[:7])
    assert probs.shape == (7, 10) and torch.allclose(probs.sum(1), torch.ones(7))
    assert torch.equal(ds.predict(val_x[:7]), probs.argmax(1))


def test_wrong_shape_is_refused():
    for bad in (torch.zeros(2, 3, 16, 16), torch.zeros(2, 1, 16, 8), torch.zeros(16, 16)):
        with pytest.raises(ValueError, match=r"\[N, 1, S, S\]"):
            ds.predict(bad)


def test_8x8_images_are_scored_as_the_data_resizes_them():
    """8x8 digits score exactly as their 16x16 versions: the score resizes like the data does."""
    small, big = load_digit_images(8)[::4], load_digit_images(16)[::4]
    assert ds.digits_score(small) == ds.digits_score(big)
    assert torch.equal(ds.predict_proba(small), ds.predict_proba(big))
