"""The one wrapper of the entry points' tasks (after lightning-hydra-template's ``task_wrapper``).

Every entry point runs its Hydra app through :func:`run_app` and its task through :func:`run_task`, so
all of them behave alike:

* a user error prints one line ``error: <problem and fix>`` on stderr and exits with code 2: a
  :class:`~ddpm.errors.DDPMError` (also when Hydra wraps it while instantiating a config, or a sweeper
  raises it), a command-line mistake Hydra reports before the task starts (a misspelt key, an unknown
  group option, an unparsable override: :mod:`ddpm.cli.hydra_errors`), a required key left out, or a
  W&B logger without a login;
* anything else is a bug and keeps its traceback (as does everything with ``HYDRA_FULL_ERROR=1``);
* in every case the W&B run is finished (one W&B run per job, also between the jobs of a sweep) and
  the ``torch.distributed`` process group is destroyed;
* in a multirun a job's user error is printed and the job fails (the sweeper decides what follows:
  Hydra's basic sweeper ends with it after the batch, the Optuna sweeper records a failed trial);
  the sweep's process does not print the same line again.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from ddpm.cli.hydra_errors import command_line_error
from ddpm.errors import ConfigError, DDPMError
from ddpm.io.stored_config import TRUST_KEY, trust_targets
from ddpm.utils.config import in_multirun
from ddpm.utils.run_dir import link_latest

log = logging.getLogger(__name__)
T = TypeVar("T")
_REPORTED = "_ddpm_reported_in"  # the pid that printed an exception's error line


def user_error(exc: BaseException) -> DDPMError | None:
    """The DDPMError behind ``exc`` (Hydra wraps errors raised while instantiating), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DDPMError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _wandb_login_error(exc: BaseException) -> str | None:
    wandb = sys.modules.get("wandb")
    usage_error = getattr(getattr(wandb, "errors", None), "UsageError", None)
    if usage_error is None or not isinstance(exc, usage_error) or "api key" not in str(exc).lower():
        return None
    return (
        "the W&B logger has no API key (wandb: No API key configured): run `wandb login` once, or set "
        "WANDB_MODE=offline (sync later), or log elsewhere with logger=csv"
    )


def error_line(exc: BaseException) -> str | None:
    """The one line of a user error behind ``exc``; None for a bug."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DDPMError):
            text = str(seen).strip()
            return text.splitlines()[0] if text else type(seen).__name__
        line = command_line_error(seen) or _wandb_login_error(seen)
        if line is not None:
            return line
        seen = seen.__cause__ or seen.__context__
    return None


def _report(line: str, exc: BaseException) -> None:
    """Print the error line, once per process for the same exception."""
    if getattr(exc, _REPORTED, None) == os.getpid():
        return
    print(f"error: {line}", file=sys.stderr)
    setattr(exc, _REPORTED, os.getpid())


def _missing(node: object, prefix: str = "") -> list[str]:
    """The dotted keys whose value is Hydra's mandatory ``???`` in a plain (unresolved) config tree."""
    if isinstance(node, dict):
        return [key for k, v in node.items() for key in _missing(v, f"{prefix}{k}.")]
    return [prefix[:-1]] if node == "???" else []


def check_required(cfg: DictConfig, usage: str | None = None) -> None:
    """Refuse a config whose mandatory values (``???``) the command line left out, naming them."""
    missing = sorted(_missing(OmegaConf.to_container(cfg, resolve=False)))
    if not missing:
        return
    fix = usage or " ".join(f"{key}=<value>" for key in missing)
    raise ConfigError(f"missing {' and '.join(missing)}: {fix}")


def _finish_wandb() -> None:
    wandb = sys.modules.get("wandb")  # imported only if a W&B logger was used
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def _close() -> None:
    _finish_wandb()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_task(task: Callable[[DictConfig], T], cfg: DictConfig, usage: str | None = None) -> T:
    """``task(cfg)`` with the entry points' error contract (see the module docstring).

    ``usage``: the command with its mandatory keys, shown when one of them is missing.
    """
    try:
        check_required(cfg, usage)
        trust_targets(cfg.get(TRUST_KEY) or ())  # the user's own classes, named by the user
        result = task(cfg)
        if cfg.get("paths") is not None:  # <task>/runs/latest: the newest run that finished (after the
            link_latest(cfg.paths.output_dir)  # task: a command naming the previous latest still finds it)
        return result
    except Exception as exc:
        line = error_line(exc)
        if line is None:
            raise
        _report(line, exc)
        if in_multirun():
            raise  # this job fails; the sweeper decides what follows
        sys.exit(2)
    finally:
        _close()


def run_app(hydra_main: Callable[[], T]) -> T:
    """Run a ``@hydra.main`` app with the error contract, also for what Hydra raises outside the task
    (composition of the command line, a sweeper's user errors)."""
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing its own multi-line report
    try:
        return hydra_main()
    except Exception as exc:
        line = None if previous == "1" else error_line(exc)
        if line is None:
            raise
        _report(line, exc)
        sys.exit(2)
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


__all__ = ["check_required", "error_line", "run_app", "run_task", "user_error"]
