from pathlib import Path

import pytest
import torch

from ddpm.evaluation.inception import InceptionFeatureExtractor, make_random_inception_weights


@pytest.fixture(scope="session")
def inception_path(tmp_path_factory) -> Path:
    """A randomly initialised (Kaiming) TF-compatible Inception state dict: nothing is downloaded."""
    return make_random_inception_weights(
        tmp_path_factory.mktemp("inception") / "random_inception.pth", seed=0
    )


@pytest.fixture(scope="session")
def inception(inception_path) -> InceptionFeatureExtractor:
    return InceptionFeatureExtractor(inception_path)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on 2 shared, oversubscribed cores OpenMP spin-waiting makes 2 threads up to
    100x slower than 1 for these small models."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
