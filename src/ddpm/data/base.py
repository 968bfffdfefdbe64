"""The DataModule base class: the keys every dataset has, deterministic sharded loaders, the on-device flip.

Batches are float32 tensors [B, C, H, W] in [-1, 1], without labels; with ``class_labels=True``
(class-conditional training) they are pairs ``(x0, {"class_labels": int64 [B]})``
(:func:`ddpm.diffusion.denoiser.split_batch`), the images and their order being the same.

Data order. ``train_dataloader()`` builds its own
``DistributedSampler(num_replicas=world_size, rank=global_rank, shuffle=True, seed=seed,
drop_last=True)`` (a :class:`~ddpm.data.loaders.ResumableDistributedSampler`), with world size and
rank from the attached trainer (1 and 0 without one), so the order of epoch ``e`` on rank ``r`` is a
function of ``(seed, e, r, world_size)``, and a checkpoint taken mid-epoch resumes at the next batch
(see :mod:`ddpm.data.loaders`). The validation loader is sequential, and sharded with
``DistributedSampler(shuffle=False)`` when ``world_size > 1`` (which pads the last shard by repeating
a few items so that all ranks get the same number of batches).

What Lightning 2.6 does with these samplers (``trainer/connectors/data_connector.py``):

* ``use_distributed_sampler=False`` (our trainer configs): the loaders are used as they are.
* ``use_distributed_sampler=True`` (the Trainer's default): Lightning replaces a loader's sampler only
  if the run is distributed *and* the sampler is not already a ``DistributedSampler``
  (``_requires_distributed_sampler``). Our training sampler is one, so it is kept with our seed,
  shuffle and ``drop_last``; the validation sampler is one whenever the run is distributed, and on a
  single device nothing is replaced at all. So the DataModule behaves the same under a default
  Trainer. (Had we returned a ``RandomSampler``, Lightning would swap in
  ``DistributedSampler(shuffle=True, seed=PL_GLOBAL_SEED or 0, drop_last=False)`` under DDP and our
  seed and ``drop_last`` would be lost.) Only ``trainer.predict`` re-wraps any sampler.
* Either way the fit loop calls ``set_epoch(current_epoch)`` on the sampler of every training loader
  (and ``batch_sampler.sampler``) at the start of each epoch, and the validation loop does the same on
  validation loaders (a no-op for ``shuffle=False``).

Random horizontal flip. Not a per-sample transform: :meth:`on_after_batch_transfer` flips each image
of a training batch with probability 1/2, on the device, drawing from
``step_generator(seed, global_step, global_rank, "flip")``. Flips are therefore a pure function of
(seed, step, rank), and a resumed run repeats an uninterrupted one; no dataloader worker RNG is
involved. Lightning calls the DataModule's hook only if the LightningModule does not override
``on_after_batch_transfer`` itself (the module's would win). With gradient accumulation all
micro-batches of one optimizer step share the step's flip mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler

from ddpm.data.loaders import (
    ResumableDataLoader,
    ResumableDistributedSampler,
    auto_num_workers,
    auto_pin_memory,
)
from ddpm.data.transforms import random_flip_batch
from ddpm.diffusion.denoiser import LABELS_KEY, Batch, split_batch, with_images
from ddpm.errors import ConfigError
from ddpm.utils.rng import step_generator


def at_least(key: str, value: int, minimum: int) -> int:
    """``value`` of the data key ``key`` as an int, or a one-line ConfigError when it is below ``minimum``."""
    if value < minimum:
        raise ConfigError(f"data.{key} must be >= {minimum}, got {value}")
    return int(value)


class ConditionedDataset(Dataset):
    """Items ``(image, {key: cond[key][i]})``: an image dataset and per-item conditioning of any kind
    (each value of ``cond`` has one row per image), batched as ``(x0, cond)`` (see ``split_batch``)."""

    def __init__(self, images: Dataset, cond: Mapping[str, Tensor]) -> None:
        for key, values in cond.items():
            if len(values) != len(images):
                raise ValueError(f"{len(values)} rows of {key!r} for {len(images)} images")
        self.images = images
        self.cond = dict(cond)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self.images[index], {key: values[index] for key, values in self.cond.items()}


class LabelledDataset(ConditionedDataset):
    """Items ``(image, {"class_labels": int64 scalar})`` of an image dataset and one label per item."""

    def __init__(self, images: Dataset, labels: Sequence[int]) -> None:
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        super().__init__(images, {LABELS_KEY: torch.as_tensor(labels, dtype=torch.long)})


class DiffusionDataModule(L.LightningDataModule):
    """Base class of this project's DataModules: it owns the keys every dataset has.

    Args:
        batch_size: per-rank training batch size (``ddpm-train`` sets it from ``global_batch_size``).
        num_workers: DataLoader worker processes; None: chosen from the machine's usable cores and the
            trainer's devices (:func:`~ddpm.data.loaders.auto_num_workers`).
        pin_memory: pin host memory (for GPU training); None: when the trainer's device is CUDA.
        persistent_workers: keep the workers alive between epochs (needs ``num_workers > 0``).
        random_flip: random horizontal flips of training batches (on the device, see the module doc).
        seed: seed of the data order and of the flips.
        val_batch_size: validation batch size; ``batch_size`` when None.
        class_labels: yield ``(x0, {"class_labels": y})`` batches for class-conditional training
            (datasets with classes only; False keeps plain image batches, the unconditional default).

    A subclass takes its own keys (a path, an image size, ...) and hands the rest on unchanged,
    ``def __init__(self, *, image_size: int = 64, **common: Any)`` and ``super().__init__(**common)``,
    naming a key of these only to give it another default (CIFAR-10's ``batch_size=128``, the digits'
    ``random_flip=False``). Its yaml in ``configs/data/`` sets both kinds of keys alike. It sets
    ``self.train_set`` / ``self.val_set`` in ``setup`` (datasets whose items are float32 [C, H, W] tensors
    in [-1, 1], or :class:`LabelledDataset` pairs with ``class_labels``) and implements
    :attr:`image_shape` (and :attr:`num_classes`, with ``has_classes = True``, if it has classes).
    """

    def __init__(
        self,
        *,
        batch_size: int = 64,
        num_workers: int | None = 0,
        pin_memory: bool | None = None,
        persistent_workers: bool = False,
        random_flip: bool = True,
        seed: int = 0,
        val_batch_size: int | None = None,
        class_labels: bool = False,
    ) -> None:
        super().__init__()
        self.batch_size = at_least("batch_size", batch_size, 1)
        self._val_batch_size = (
            None if val_batch_size is None else at_least("val_batch_size", val_batch_size, 1)
        )
        self.num_workers = None if num_workers is None else at_least("num_workers", num_workers, 0)
        self.pin_memory = None if pin_memory is None else bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        self.random_flip = bool(random_flip)
        self.seed = int(seed)
        self.class_labels = bool(class_labels)
        if self.class_labels and not self.has_classes:
            raise ConfigError(
                f"{type(self).__name__} has no class labels: drop data.class_labels=true (class-conditional "
                "training needs digits, cifar10 or an image_folder with one subfolder per class)"
            )
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    # ----------------------------------------------------------------- shape
    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images, known from the config before ``setup``."""
        raise NotImplementedError

    has_classes = False  # True for datasets with class labels (they implement num_classes)

    @property
    def num_classes(self) -> int | None:
        """The number of classes of a dataset with labels (None: no labels)."""
        return None

    @property
    def val_batch_size(self) -> int:
        return int(self._val_batch_size or self.batch_size)

    @val_batch_size.setter
    def val_batch_size(self, value: int | None) -> None:
        self._val_batch_size = value

    # ----------------------------------------------------------------- loaders
    def _world(self) -> tuple[int, int]:
        """(world_size, global_rank) of the attached trainer, (1, 0) without one."""
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _loader_kwargs(self) -> dict[str, Any]:
        """Workers and pinning as configured, or (None) as fit the machine and the trainer's device."""
        strategy = getattr(self.trainer, "strategy", None)  # None: no trainer attached yet
        workers = self.num_workers
        if workers is None:
            workers = auto_num_workers(getattr(self.trainer, "num_devices", 1))
        pin = self.pin_memory
        if pin is None:
            pin = auto_pin_memory(getattr(strategy, "root_device", None))
        kwargs: dict[str, Any] = {"num_workers": workers, "pin_memory": pin}
        if workers > 0:
            kwargs["persistent_workers"] = self.persistent_workers
        return kwargs

    def _dataset(self, split: str) -> Dataset:
        dataset = self.train_set if split == "train" else self.val_set
        if dataset is None:
            self.setup("fit")
            dataset = self.train_set if split == "train" else self.val_set
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() did not create the {split} set")
        return dataset

    def build_train_dataloader(self, world_size: int = 1, rank: int = 0) -> ResumableDataLoader:
        """The training loader of replica ``rank`` out of ``world_size`` (shuffled, drop_last)."""
        dataset = self._dataset("train")
        sampler = ResumableDistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=self.seed, drop_last=True
        )
        if len(sampler) < self.batch_size:
            raise ConfigError(
                f"the training set has {len(dataset)} images, {len(sampler)} per rank on {world_size} "
                f"rank(s): fewer than one batch of {self.batch_size}; lower data.batch_size or add data"
            )
        return ResumableDataLoader(
            dataset, self.batch_size, sampler=sampler, drop_last=True, **self._loader_kwargs()
        )

    def build_val_dataloader(self, world_size: int = 1, rank: int = 0) -> DataLoader:
        """The validation loader of replica ``rank``: in order, sharded when ``world_size > 1``."""
        dataset = self._dataset("val")
        if world_size > 1:
            sampler: Any = DistributedSampler(
                dataset, num_replicas=world_size, rank=rank, shuffle=False, drop_last=False
            )
        else:
            sampler = SequentialSampler(dataset)
        return DataLoader(
            dataset, batch_size=self.val_batch_size, sampler=sampler, drop_last=False, **self._loader_kwargs()
        )

    def train_dataloader(self) -> ResumableDataLoader:
        return self.build_train_dataloader(*self._world())

    def val_dataloader(self) -> DataLoader:
        return self.build_val_dataloader(*self._world())

    # ----------------------------------------------------------------- flip
    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        """Random horizontal flip of training batches' images, a function of (seed, global_step,
        global_rank); their conditioning is kept as it is."""
        trainer = self.trainer
        if not self.random_flip or trainer is None or not trainer.training:
            return batch
        images, _ = split_batch(batch)
        generator = step_generator(
            self.seed, int(trainer.global_step), int(trainer.global_rank), "flip", device=images.device
        )
        return with_images(batch, random_flip_batch(images, generator))
