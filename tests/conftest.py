import os

import pytest
import torch

# The test networks are tiny: one intra-op thread is faster, and two OpenMP threads per process
# stall badly whenever another process shares the two cores (subprocess tests, other jobs).
torch.set_num_threads(1)
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "0")


@pytest.fixture(autouse=True)
def _clear_hydra():
    from hydra.core.global_hydra import GlobalHydra

    yield
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def inception_path(tmp_path_factory):
    """A randomly initialised (Kaiming) TF-compatible Inception state dict: nothing is downloaded."""
    from ddpm.metrics.inception import make_random_inception_weights

    return make_random_inception_weights(
        tmp_path_factory.mktemp("inception") / "random_inception.pth", seed=0
    )


@pytest.fixture(scope="session")
def inception(inception_path):
    """The TF-compatible Inception with the random weights of ``inception_path``."""
    from ddpm.metrics.inception import InceptionFeatureExtractor

    return InceptionFeatureExtractor(inception_path)


@pytest.fixture(scope="session")
def vgg16_path(tmp_path_factory):
    """A randomly initialised torchvision VGG-16 state dict (530 MB, written once): nothing is downloaded."""
    from ddpm.metrics.vgg16 import make_random_vgg16_weights

    return make_random_vgg16_weights(tmp_path_factory.mktemp("vgg16") / "random_vgg16.pth", seed=0)
