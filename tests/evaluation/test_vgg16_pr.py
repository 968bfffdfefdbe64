"""Precision/recall in VGG-16 space through ``ddpm-eval``: equal to torch-fidelity's ``prc`` on the same
images and weights, resumable, and refused in one line before any sampling when the weights are missing.

VGG-16 on a CPU at 224x224 is slow (about 0.35 s an image on one thread): a handful of images."""

import json

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from ddpm.evaluation.datasets import split_dataset
from ddpm.metrics.inception import as_uint8_rgb
from ddpm.metrics.vgg16 import VGG16_FILENAME, VGG16WeightsError
from tests.helpers import TINY, compose_train

from .helpers import write_lightning_checkpoint
from .test_eval_app import eval_overrides, run_eval

PR_VGG16 = {
    "metrics.fid": "false",  # precision/recall alone: no Inception is needed, nor resolved
    "metrics.inception_score": "false",
    "metrics.nll.enabled": "false",
    "metrics.precision_recall": "true",
    "metrics.pr_features": "vgg16",
    "metrics.pr_neighbours": 3,  # 3 of 4 reference images: balls wide enough for a precision of 0.6
    "metrics.reference_splits": "[test]",
    "metrics.num_reference_images": 4,
    "generation.num_samples": 5,
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    write_lightning_checkpoint(folder / "last.ckpt", folder)
    return folder / "last.ckpt"


class Images(torch.utils.data.Dataset):
    """uint8 RGB images [n, 3, H, W] as torch-fidelity reads a dataset input."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def _samples(run_dir) -> torch.Tensor:
    files = sorted((run_dir / "samples").glob("samples_*.npz"))
    images = torch.cat([torch.from_numpy(np.load(f)["images"]) for f in files])
    return as_uint8_rgb(images.permute(0, 3, 1, 2))


def _reference_images(tmp_path, num: int) -> torch.Tensor:
    """The first ``num`` images of the checkpoint's test split, as ddpm-eval reads them."""
    cfg = compose_train([*TINY, "diffusion.num_timesteps=10"], tmp_path / "data")
    dataset = split_dataset(instantiate(cfg.data), "test")
    return as_uint8_rgb(torch.stack([dataset[i] for i in range(num)]))


def test_vgg16_precision_recall_equals_torch_fidelity(tmp_path, checkpoint, vgg16_path):
    from torch_fidelity import calculate_metrics

    extra = {**PR_VGG16, "metrics.vgg16_weights": str(vgg16_path)}
    overrides = eval_overrides(checkpoint, tmp_path / "no_inception.pth", tmp_path / "cache", **extra)
    report = run_eval(overrides, tmp_path / "out")
    theirs = calculate_metrics(
        input1=Images(_samples(tmp_path / "out")),
        input2=Images(_reference_images(tmp_path, 4)),
        prc=True,
        prc_neighborhood=3,
        feature_extractor="vgg16",
        feature_extractor_weights_path=str(vgg16_path),
        batch_size=8,
        cuda=False,
        cache=False,
        save_cpu_ram=True,
        verbose=False,
    )
    metrics, protocol = report["metrics"], report["protocol"]
    pr = {"precision_vgg16_5_ancestral10_test", "recall_vgg16_5_ancestral10_test"}
    assert {k for k in metrics if not k.startswith("digits_")} == pr  # (a model of the digits: its score too)
    assert metrics["precision_vgg16_5_ancestral10_test"] == pytest.approx(
        theirs["precision"], abs=1e-6
    )  # theirs: a float32 mean
    assert 0 < theirs["precision"] < 1  # a value that tells the sets and the feature spaces apart
    assert metrics["recall_vgg16_5_ancestral10_test"] == pytest.approx(theirs["recall"], abs=1e-6)
    record = protocol["precision_recall"]
    assert record["features"] == "vgg16_fc2_relu" and record["k"] == 3
    assert record["sizes"] == {"test": {"generated": 5, "real": 4}}
    assert record["vgg16"]["official"] is False and protocol["inception"] is None
    features = sorted((tmp_path / "out" / "features_vgg16").glob("features_*.npz"))
    assert len(features) == 3 and np.load(features[0])["features"].shape == (2, 4096)
    assert not (tmp_path / "out" / "features").exists()  # no Inception pass
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert info["reference_cache_hits"] == {"test_vgg16": False}
    again = run_eval(overrides, tmp_path / "out")  # samples, their features and the reference's reused
    assert again == report
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert info["reference_cache_hits"] == {"test_vgg16": True}


def test_missing_vgg16_weights_are_refused_in_one_line_before_sampling(tmp_path, checkpoint, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("DDPM_VGG16_WEIGHTS", raising=False)
    overrides = eval_overrides(checkpoint, tmp_path / "no_inception.pth", tmp_path / "cache", **PR_VGG16)
    with pytest.raises(VGG16WeightsError) as info:
        run_eval([*overrides, "metrics.allow_download=false"], tmp_path / "out")
    message = str(info.value)
    assert (
        "\n" not in message
        and str(tmp_path / "torch_home" / "hub" / "checkpoints" / VGG16_FILENAME) in message
    )
    assert not (tmp_path / "out" / "samples").exists()  # refused before sampling anything
