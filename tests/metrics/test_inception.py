"""The TF-compatible Inception: random weights (no download), inputs, offline errors, torchmetrics parity."""

import pytest
import torch
from torch import nn

from ddpm.metrics import inception as inception_module
from ddpm.metrics.inception import (
    INCEPTION_FILENAME,
    TORCH_FIDELITY_FILENAME,
    InceptionFeatureExtractor,
    InceptionWeightsError,
    as_uint8_rgb,
    resolve_inception_weights,
)
from ddpm.metrics.statistics import FeatureStatistics, InceptionStatistics, fid


def _images(n, seed, smooth=False):
    g = torch.Generator().manual_seed(seed)
    if smooth:  # flat colour patches
        return (torch.rand(n, 3, 1, 1, generator=g) * 255).expand(n, 3, 8, 8).to(torch.uint8).contiguous()
    return torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)


@pytest.fixture(scope="module")
def two_sets(inception):
    noisy, smooth = _images(3, 0), _images(3, 1, smooth=True)
    return noisy, smooth, inception(noisy), inception(smooth)


def test_random_inception_features_do_not_collapse(inception, two_sets):
    _, _, (f_noisy, l_noisy), (f_smooth, _) = two_sets
    assert f_noisy.shape == (3, 2048) and l_noisy.shape == (3, 1008)
    assert torch.isfinite(f_noisy).all() and torch.isfinite(l_noisy).all()
    a, b = FeatureStatistics(), FeatureStatistics()
    a.update(f_noisy)
    b.update(f_smooth)
    assert fid(a, b) > 1.0  # features of different images differ: FID is not ~0
    assert not inception.official  # random weights are flagged as not the paper's


def test_float_and_grayscale_inputs(inception, two_sets):
    noisy, _, (features, _), _ = two_sets
    as_float = noisy.float() / 127.5 - 1.0  # model space [-1, 1] -> the same uint8 pixels
    assert torch.equal(as_uint8_rgb(as_float), noisy)
    f_float, _ = inception(as_float[:1])
    torch.testing.assert_close(f_float, features[:1], rtol=1e-4, atol=1e-5)
    gray = noisy[:, :1]
    assert torch.equal(as_uint8_rgb(gray), gray.expand(-1, 3, -1, -1))
    with pytest.raises(ValueError, match="1- or 3-channel"):
        as_uint8_rgb(torch.zeros(1, 2, 4, 4, dtype=torch.uint8))


def test_torchmetrics_fid_with_the_tf_resize_agrees(inception_path, inception, two_sets):
    from torchmetrics.image.fid import FrechetInceptionDistance

    noisy, smooth, (f_noisy, _), (f_smooth, _) = two_sets
    # antialias=False selects torch-fidelity's TF1-compatible resize (torchmetrics' default does not).
    metric = FrechetInceptionDistance(feature_extractor_weights_path=str(inception_path), antialias=False)
    metric.update(noisy, real=True)
    metric.update(smooth, real=False)
    a, b = FeatureStatistics(), FeatureStatistics()
    a.update(f_noisy)
    b.update(f_smooth)
    assert float(metric.compute()) == pytest.approx(fid(a, b), rel=1e-3)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache and no network."""
    monkeypatch.setattr(inception_module, "hub_checkpoint_dir", lambda: tmp_path / "hub" / "checkpoints")
    monkeypatch.delenv(inception_module.ENV_VAR, raising=False)

    def no_network(destination):
        raise OSError("URLError: <urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(inception_module, "_download", no_network)
    return tmp_path / "hub" / "checkpoints"


def test_offline_error_names_the_file_and_where_to_put_it(offline):
    with pytest.raises(InceptionWeightsError) as info:
        resolve_inception_weights(None, allow_download=True)
    message = str(info.value)
    assert INCEPTION_FILENAME in message
    assert str(offline / INCEPTION_FILENAME) in message
    assert "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" in message
    assert "metrics.inception_weights=" in message and "DDPM_INCEPTION_WEIGHTS" in message
    assert "name resolution" in message
    assert "\n" not in message
    with pytest.raises(InceptionWeightsError, match="downloads are disabled"):
        resolve_inception_weights(None, allow_download=False)
    with pytest.raises(InceptionWeightsError, match="do not exist"):
        resolve_inception_weights(offline / "nowhere.pth")


def test_weights_are_found_by_path_env_and_hub_cache(offline, inception_path, monkeypatch):
    assert resolve_inception_weights(inception_path) == inception_path
    monkeypatch.setenv(inception_module.ENV_VAR, str(inception_path))
    assert resolve_inception_weights(None) == inception_path
    monkeypatch.delenv(inception_module.ENV_VAR)
    offline.mkdir(parents=True)
    cached = offline / TORCH_FIDELITY_FILENAME  # torch-fidelity's own cache name is accepted too
    cached.write_bytes(inception_path.read_bytes())
    assert resolve_inception_weights(None, allow_download=False) == cached


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "torchvision_inception.pth"
    torch.save(nn.Linear(2048, 1000).state_dict(), path)  # e.g. a torchvision-style classifier
    with pytest.raises(InceptionWeightsError, match="not the TF-compatible Inception-v3"):
        InceptionFeatureExtractor(path)


class _Uint8Images(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def test_torch_fidelity_end_to_end_agrees(inception_path, inception, two_sets):
    """Our feeding (uint8, TF resize) and IS splits = torch-fidelity's calculate_metrics.

    (Its FID is left out: numpy ``eigvals`` of a 2048x2048 product takes a minute on 2 busy cores;
    FID is checked against torchmetrics above.)"""
    import torch_fidelity

    noisy, smooth, (f_noisy, l_noisy), _ = two_sets
    reference = torch_fidelity.calculate_metrics(
        input1=_Uint8Images(noisy),
        input2=_Uint8Images(smooth),
        cuda=False,
        isc=True,
        fid=False,
        isc_splits=3,
        feature_extractor_weights_path=str(inception_path),
        batch_size=3,
        cache=False,
        save_cpu_ram=True,  # no DataLoader worker processes
        verbose=False,
    )
    a = InceptionStatistics(3, (3, 1), feature_dim=2048)
    a.update(f_noisy, l_noisy, torch.arange(3))
    assert a.inception_score(3)[0] == pytest.approx(reference["inception_score_mean"], rel=1e-6)


def test_inception_runs_in_strict_fp32_whatever_the_tf32_setting(inception, monkeypatch):
    seen = {}
    forward = inception.net.forward

    def spy(x):
        seen["precision"] = torch.get_float32_matmul_precision()
        seen["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
        return forward(x)

    monkeypatch.setattr(inception.net, "forward", spy)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")  # what GPU training runs use
    try:
        inception(_images(1, 0))
        assert seen == {"precision": "highest", "cudnn_tf32": False}
        assert torch.get_float32_matmul_precision() == "high"  # restored for the U-Net
    finally:
        torch.set_float32_matmul_precision(previous)


def test_features_do_not_depend_on_the_inception_batch_size(inception):
    images = _images(4, 2)
    features, logits = inception(images)
    parts = [inception(images[:1]), inception(images[1:])]
    torch.testing.assert_close(torch.cat([f for f, _ in parts]), features, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.cat([g for _, g in parts]), logits, rtol=1e-4, atol=1e-4)
