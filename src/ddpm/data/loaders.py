"""A training DataLoader whose order is a function of (seed, epoch, rank) and that resumes mid-epoch.

Lightning 2.6 (checked in ``lightning/pytorch/loops``) and a plain ``DataLoader``:

* the fit loop calls ``sampler.set_epoch(epoch)`` at the start of every epoch, so a
  ``DistributedSampler(shuffle=True, seed=seed)`` gives the permutation ``randperm(seed + epoch)``;
* resuming from a checkpoint taken mid-epoch restarts that epoch's iteration *from its first batch*
  (the loop only skips ahead in its own counters, and warns "your dataloader is not resumable"), so
  the resumed run sees the first batches of the epoch twice and never sees the last ones;
* on resume the loader's iterator is created in ``FitLoop.setup_data`` *before* ``set_epoch`` is
  called; with ``num_workers > 0`` the workers start drawing indices at that moment, i.e. with the
  fresh sampler's epoch 0, not the resumed epoch.

:class:`ResumableDataLoader` fixes both. It implements ``state_dict``/``load_state_dict`` (Lightning's
``_Stateful`` protocol), so Lightning stores ``{"epoch", "batches"}`` in every checkpoint
(``loops.fit_loop.state_dict.combined_loader``) and hands it back before the first batch of a resumed
run; the loader then makes :class:`ResumableDistributedSampler` skip the batches already consumed in
that epoch. Its ``__iter__`` is lazy (a generator), so the underlying iterator and its workers are only
created at the first ``next()``, after Lightning's ``set_epoch``.

Bad images skipped with ``data.skip_bad_images=true`` are replaced by a fixed substitute, not dropped
(:mod:`ddpm.data.bad_images`), so they change neither the order nor the resumed position; the loader
logs their count at the end of each epoch.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import torch
from lightning.fabric.utilities.data import suggested_max_num_workers
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ddpm.data.bad_images import report_bad_images

MAX_AUTO_WORKERS = 8  # enough to keep one GPU fed with decoded images; more only costs memory


def auto_num_workers(local_devices: int = 1) -> int:
    """Loader workers per process for ``data.num_workers=null``: Lightning's own suggestion for the usable
    cores (the affinity mask, e.g. a SLURM allocation) shared by ``local_devices`` processes, one core
    left to each, so Lightning's "does not have many workers" and PyTorch's "more workers than cores"
    warnings both stay quiet; at most :data:`MAX_AUTO_WORKERS`."""
    return min(MAX_AUTO_WORKERS, suggested_max_num_workers(max(1, int(local_devices))))


def auto_pin_memory(device: torch.device | None) -> bool:
    """``data.pin_memory=null``: pin host memory only for batches bound for a CUDA device (pinning for a
    CPU run only costs, and PyTorch warns when no accelerator is there)."""
    return device is not None and device.type == "cuda"


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` that can start its next iteration part-way into the epoch.

    ``skip_next(n)`` makes the next ``__iter__`` (only that one) drop its first ``n`` indices of this
    replica's shard. ``__len__`` is unchanged (Lightning counts the skipped batches as consumed).
    """

    def __init__(self, dataset: Dataset, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self._skip = 0

    def skip_next(self, num_indices: int) -> None:
        if num_indices < 0:
            raise ValueError(f"cannot skip a negative number of indices ({num_indices})")
        self._skip = num_indices

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableDistributedSampler` that remembers its position.

    ``state_dict()`` returns the sampler's epoch and the number of batches of that epoch handed out so
    far; after ``load_state_dict(state)``, the next iteration, if it is for the same epoch, skips those
    batches. A state from another epoch (e.g. saved at the end of an epoch) or from a run with another
    batch size, world size or dataset size resumes nothing, with a warning in the latter case.
    """

    sampler: ResumableDistributedSampler

    def __init__(
        self, dataset: Dataset, batch_size: int, sampler: ResumableDistributedSampler, **kwargs: Any
    ):
        if not isinstance(sampler, ResumableDistributedSampler):
            raise TypeError("ResumableDataLoader needs a ResumableDistributedSampler")
        kwargs.setdefault("drop_last", True)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self._epoch = sampler.epoch
        self._batches = 0
        self._pending: dict[str, int] | None = None

    def _signature(self) -> dict[str, int]:
        return {
            "batch_size": int(self.batch_size or 0),
            "num_replicas": int(self.sampler.num_replicas),
            "dataset_len": len(self.dataset),  # type: ignore[arg-type]
        }

    def state_dict(self) -> dict[str, int]:
        if self._pending is not None:  # restored but not iterated yet: keep the restored position
            return dict(self._pending)
        return {"epoch": int(self._epoch), "batches": int(self._batches), **self._signature()}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        expected = self._signature()
        differs = {k: (state_dict.get(k), v) for k, v in expected.items() if state_dict.get(k) != v}
        if differs:
            warnings.warn(
                f"not resuming the data order mid-epoch: the checkpoint's loader differs in {differs} "
                "(saved, now); the resumed epoch restarts from its first batch",
                stacklevel=2,
            )
            self._pending = None
            return
        self._pending = {k: int(v) for k, v in state_dict.items()}

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return self._iterate()

    def _iterate(self) -> Iterator[Any]:
        report_bad_images(self.dataset, f"in epoch {self._epoch}")  # a previous epoch left unexhausted
        epoch = self.sampler.epoch
        skip = 0
        if self._pending is not None:
            pending, self._pending = self._pending, None
            if pending["epoch"] == epoch:
                skip = pending["batches"]
        self.sampler.skip_next(skip * int(self.batch_size or 0))
        self._epoch, self._batches = epoch, skip
        for batch in super().__iter__():
            self._batches += 1
            yield batch
        report_bad_images(self.dataset, f"in epoch {epoch}")
