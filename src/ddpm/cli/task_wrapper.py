"""The one wrapper of the entry points' tasks (after lightning-hydra-template's ``task_wrapper``).

Every entry point runs its task through :func:`run_task`, so all of them behave alike:

* a user error (:class:`~ddpm.errors.DDPMError`, also when Hydra wraps it while instantiating a
  config) prints one line ``error: <problem and fix>`` on stderr and exits with code 2;
* anything else is a bug and keeps its traceback;
* in every case the W&B run is finished (one W&B run per job, also between the jobs of a sweep) and
  the ``torch.distributed`` process group is destroyed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

import torch.distributed as dist
from omegaconf import DictConfig

from ddpm.errors import DDPMError

log = logging.getLogger(__name__)
T = TypeVar("T")


def user_error(exc: BaseException) -> DDPMError | None:
    """The DDPMError behind ``exc`` (Hydra wraps errors raised while instantiating), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DDPMError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _finish_wandb() -> None:
    wandb = sys.modules.get("wandb")  # imported only if a W&B logger was used
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def _close() -> None:
    _finish_wandb()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_task(task: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """``task(cfg)`` with the entry points' error contract (see the module docstring)."""
    try:
        return task(cfg)
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    finally:
        _close()


__all__ = ["run_task", "user_error"]
