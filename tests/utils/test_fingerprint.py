"""Fingerprints: every part a stored result depends on changes its key; the same parts give the same key."""

import hashlib
import json

import pytest
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.sampling import AncestralSampler
from ddpm.utils.fingerprint import (
    data_fingerprint,
    describe_labels,
    describe_sampler,
    describe_tensor,
    fingerprint,
    module_digest,
)
from tests.helpers import tiny_unet


@pytest.fixture(scope="module")
def model():
    return tiny_unet(3, 8)


@pytest.fixture(scope="module")
def sampler():
    return AncestralSampler(GaussianDiffusion(num_timesteps=8))


def test_fingerprint_changes_with_weights_and_sampler(model, sampler):
    base = describe_sampler(sampler)
    other = describe_sampler(AncestralSampler(GaussianDiffusion(num_timesteps=8, var_type="fixed_small")))
    assert base != other and base["diffusion"]["var_type"] == "fixed_large"
    assert module_digest(model) != module_digest(tiny_unet(3, 8, seed=1))
    assert module_digest(model) == module_digest(tiny_unet(3, 8, seed=0))


def test_fingerprint_is_the_sha256_of_the_sorted_json_of_its_parts():
    """Kept stable: an evaluation resumes from shards written by an earlier version of the code."""
    expected = hashlib.sha256(json.dumps({"seed": 0, "weights": "w"}, sort_keys=True).encode()).hexdigest()
    assert fingerprint(weights="w", seed=0) == expected


def test_labels_tensors_and_pixels_are_told_apart():
    labels = torch.tensor([0, 1, 1, 3])
    assert describe_labels(labels) == {
        "num_labels": 4,
        "per_class": [1, 2, 0, 1],
        "sha256": hashlib.sha256(labels.numpy().tobytes()).hexdigest()[:16],
    }
    assert describe_labels(labels) != describe_labels(labels.flip(0))
    assert describe_tensor(torch.ones(2, 3))["shape"] == [2, 3]
    assert describe_tensor(torch.ones(2, 3)) != describe_tensor(torch.ones(2, 3, dtype=torch.float64))
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    base = data_fingerprint(10, images)
    assert base == data_fingerprint(10, list(images))
    assert base != data_fingerprint(11, images) and base != data_fingerprint(10, images.flip(0))
