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
