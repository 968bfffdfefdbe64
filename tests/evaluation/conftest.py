from pathlib import Path

import pytest

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
