"""Truncated or corrupt images in LSUN LMDBs and image folders: one clear error, or skipped and counted.

By default a bad image stops the run with :class:`BadImageError`, a one-line
:class:`~ddpm.errors.DDPMError` naming the LMDB key or the file, also when it is met in a DataLoader
worker (PyTorch re-raises the worker's exception type in the main process; the message keeps the
original line first, so the entry points print ``error: <that line>``).

With ``data.skip_bad_images=true`` a bad item ``i`` is *replaced* by the next good item
(``i + 1``, ``i + 2``, ... wrapping around) instead of being dropped. The dataset length, the sampler's
permutation and thus the resumable, exactly reproducible data order (:mod:`ddpm.data.loaders`) are
unchanged, and the substitute is a function of the data alone: which worker meets the bad item, or
whether the run was resumed, does not matter. Scanning the whole dataset at setup would also be exact,
but decodes every image (hours for LSUN bedroom). A bad item is named in one warning per run: the
items already named are kept in shared memory, so the workers forked anew for every epoch do not name
them again (up to :data:`_NAMED` items per worker; more are counted only). The number of replacements is
counted in shared memory across workers and logged by the training loader at the end of an epoch (when
the loop stops after the epoch's last batch without exhausting the loader, as Lightning does, at the
start of the next; by ``teardown`` for the last one), as a warning when it differs from the last one
warned (the same images are met in every epoch), else at debug level.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TypeVar

import torch
from torch.utils.data import get_worker_info

from ddpm.errors import DDPMError

log = logging.getLogger(__name__)
T = TypeVar("T")
_SLOTS = 1024  # counter slots: one per DataLoader worker id (+ the main process), race-free
_NAMED = 16  # bad items remembered as named, per slot (each slot written by its own worker only)


class BadImageError(DDPMError):
    """An image that cannot be decoded (truncated, corrupt, not an image); the message names it."""

    detail: str | None = None  # the message without the advice, for the warning when skipping

    def __init__(self, message: str = "") -> None:
        super().__init__(_own_line(message))


def _own_line(message: str) -> str:
    """Our one line, also from the text of a worker's re-raised traceback (our line comes last)."""
    if "\n" not in message:
        return message
    for line in reversed(message.strip().splitlines()):
        name, sep, rest = line.partition(": ")
        if sep and name.split(".")[-1] == BadImageError.__name__:
            return f"{rest} (in a DataLoader worker)"
    return message.strip().splitlines()[0]


SKIP_FIX = "remove it, or replace it by the next good image with data.skip_bad_images=true"


def undecodable(name: str, exc: BaseException, fix: str = SKIP_FIX) -> BadImageError:
    """The error for an image ``name`` (an LMDB key, a file) whose decoding raised ``exc``, and ``fix``."""
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    error = BadImageError(f"{name} cannot be decoded ({reason}): {fix}")
    error.detail = f"{name} cannot be decoded ({reason})"
    return error


class BadImagePolicy:
    """Raise on a bad image, or (``skip=True``) replace it by the next good item and count it.

    Args:
        skip: replace instead of raising.
        what: how the dataset is named in messages, e.g. ``"LSUN church_outdoor train"``.
    """

    def __init__(self, skip: bool, what: str) -> None:
        self.skip = bool(skip)
        self.what = what
        self.counts = torch.zeros(_SLOTS + 1, dtype=torch.int64).share_memory_()
        self.named = torch.full((_SLOTS + 1, _NAMED), -1, dtype=torch.int64).share_memory_()
        self._warned: set[int] = set()  # named by this process (also past _NAMED)
        self._pid = os.getpid()
        self._reported = 0  # the count last reported as a warning

    def load(self, index: int, size: int, load: Callable[[int], T]) -> T:
        """``load(index)``; on :class:`BadImageError`, raise it or return the next good item."""
        try:
            return load(index)
        except BadImageError as exc:
            if not self.skip:
                raise
            self._note(index, exc)
        for step in range(1, size):
            candidate = (index + step) % size
            try:
                return load(candidate)
            except BadImageError as exc:
                self._note(candidate, exc, count=False)
        raise BadImageError(f"{self.what}: every one of its {size} images is bad")

    def _note(self, index: int, exc: BadImageError, count: bool = True) -> None:
        info = get_worker_info()
        slot = _SLOTS if info is None else info.id % _SLOTS
        if count:
            self.counts[slot] += 1
        if os.getpid() != self._pid:  # a forked worker: its own set of warnings
            self._warned, self._pid = set(), os.getpid()
        if index in self._warned or bool((self.named == index).any()):
            return  # named already in this run, by this process or by any worker of an earlier epoch
        self._warned.add(index)
        free = (self.named[slot] < 0).nonzero()
        if len(free):
            self.named[slot, int(free[0])] = index
        detail = getattr(exc, "detail", str(exc))
        log.warning("%s: replaced by the next good image (data.skip_bad_images=true)", detail)

    def report(self, when: str) -> int:
        """Log and reset the number of replacements since the last report (a warning when it differs from
        the last one warned); returns it."""
        total = int(self.counts.sum())
        if total:
            level = logging.DEBUG if total == self._reported else logging.WARNING
            self._reported = total
            log.log(
                level,
                "%s: %d bad image(s) replaced by the next good image %s (data.skip_bad_images=true)",
                self.what,
                total,
                when,
            )
            self.counts.zero_()
        return total


def report_bad_images(dataset: object, when: str) -> int:
    """:meth:`BadImagePolicy.report` of ``dataset``'s policy, if it has one; else 0."""
    policy = getattr(dataset, "bad_images", None)
    return policy.report(when) if isinstance(policy, BadImagePolicy) else 0


__all__ = ["BadImageError", "BadImagePolicy", "report_bad_images", "undecodable"]
