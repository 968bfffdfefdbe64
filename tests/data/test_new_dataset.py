"""A new dataset is one DataModule class and one yaml, trained here through ``ddpm-train``'s own code path.

:class:`StripesDataModule` takes its own keys (``count``, ``image_size``) and hands the common ones
(``batch_size``, ``seed``, ``random_flip``, ``num_workers``, ...) on to
:class:`~ddpm.data.base.DiffusionDataModule`; ``stripes.yaml``, written into a configs directory on Hydra's
search path, sets both kinds alike, as ``configs/data/*.yaml`` do. Shipped, they would be
``src/ddpm/data/stripes.py`` and ``configs/data/stripes.yaml``, plus the class's ``_target_`` in
``ddpm.io.stored_config.ALLOWED_TARGETS`` (so that ``ddpm-eval`` and ``ddpm-sample`` rebuild it from a
checkpoint's stored config) and, for a ``ddpm.data.<Class>`` target, its export from ``ddpm.data``.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ddpm.cli.ddpm_train import train
from ddpm.data import CIFAR10DataModule, DigitsDataModule, ImageFolderDataModule, LSUNDataModule
from ddpm.data.base import DiffusionDataModule, at_least
from ddpm.errors import ConfigError
from tests.helpers import TINY, compose_train


class StripeImages(Dataset):
    """``count`` one-channel images, item ``i`` black (-1) but for a white (+1) column ``i % size``."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size = count, size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Tensor:
        image = -torch.ones(1, self.size, self.size)
        image[..., index % self.size] = 1.0
        return image


class StripesDataModule(DiffusionDataModule):
    """Vertical stripes: ``count`` training images and four validation ones, ``image_size`` square."""

    def __init__(self, *, count: int = 32, image_size: int = 8, **common: Any) -> None:
        super().__init__(**common)
        self.count = at_least("count", count, 1)
        self.image_size = at_least("image_size", image_size, 1)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, self.image_size, self.image_size)

    def setup(self, stage: str | None = None) -> None:
        self.train_set = StripeImages(self.count, self.image_size)
        self.val_set = StripeImages(4, self.image_size)


STRIPES_YAML = f"""# Vertical stripes (a toy dataset of the tests)
_target_: {__name__}.StripesDataModule
count: 24
image_size: 8
batch_size: 8
num_workers: 0
random_flip: true
seed: ${{seed}}
"""


def test_the_new_dataset_trains_through_ddpm_train(tmp_path):
    (tmp_path / "configs" / "data").mkdir(parents=True)
    (tmp_path / "configs" / "data" / "stripes.yaml").write_text(STRIPES_YAML)
    net = [o for o in TINY if not o.startswith("data")] + ["model.resolution=8", "model.attn_resolutions=[4]"]
    overrides = [f"hydra.searchpath=[file://{tmp_path / 'configs'}]", "data=stripes", *net, "seed=3"]
    cfg = compose_train([*overrides, "trainer.max_steps=2", "trainer.val_check_interval=2"], tmp_path / "run")
    _, objects = train(cfg)
    data = objects["datamodule"]
    assert isinstance(data, StripesDataModule) and objects["trainer"].global_step == 2
    assert (data.count, data.image_size, data.batch_size, data.seed, data.random_flip) == (24, 8, 8, 3, True)
    batch = next(iter(data.train_dataloader()))
    assert batch.shape == (8, 1, 8, 8) and torch.all(batch.abs() == 1)
    with pytest.raises(ConfigError, match="data.count must be >= 1, got 0"):
        StripesDataModule(count=0)
    with pytest.raises(ConfigError, match="data.batch_size must be >= 1, got 0"):
        StripesDataModule(batch_size=0)  # a common key, checked by the base class


@pytest.mark.parametrize("cls", [DigitsDataModule, CIFAR10DataModule, ImageFolderDataModule, LSUNDataModule])
def test_a_datamodule_names_a_common_key_only_to_change_its_default(cls):
    common = inspect.signature(DiffusionDataModule.__init__).parameters
    own = inspect.signature(cls.__init__).parameters
    for name in set(own) & set(common) - {"self"}:
        assert own[name].default != common[name].default, f"{cls.__name__} repeats {name}"
    assert inspect.Parameter.VAR_KEYWORD in {p.kind for p in own.values()}  # the rest go to the base
