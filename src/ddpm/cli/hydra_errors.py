"""Hydra's and OmegaConf's errors about the command line, as the one line of the error contract.

Hydra reports a misspelt key, an unknown group option or an unparsable override in 6-13 lines (with a
config search path and a hint about ``HYDRA_FULL_ERROR``), exit code 1. :func:`command_line_error`
turns each into one line that names the key or option and the fix: the closest valid key, or the
group's options.
"""

from __future__ import annotations

import difflib
from typing import Any

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

# keys that were renamed: the old name gets a hint instead of "not a key"
RENAMED_KEYS = {"checkpoint": "ckpt_path"}  # one key for the weights to load, in every entry point


def _closest(word: str, candidates: list[str]) -> str | None:
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _choices(options: list[str], limit: int = 20) -> str:
    shown = ", ".join(options[:limit])
    return shown + (f", ... ({len(options)} in all)" if len(options) > limit else "")


def unknown_key(error: OmegaConfBaseException, override: str | None = None) -> str:
    """``trainer.max_step is not a key of trainer: did you mean trainer.max_steps?``."""
    full_key = str(error.full_key)
    if full_key in RENAMED_KEYS:
        new = RENAMED_KEYS[full_key]
        value = override.split("=", 1)[1] if override and "=" in override else "..."
        return f"{full_key} is now called {new} (as in every ddpm command): pass {new}={value}"
    parent, _, key = full_key.rpartition(".")
    node = error.parent_node
    keys = [str(k) for k in node] if hasattr(node, "keys") else []
    where = parent or "the config"
    closest = _closest(key, keys)
    if closest is not None:
        fix = f"did you mean {f'{parent}.' if parent else ''}{closest}?"
    else:
        fix = f"its keys are {_choices(sorted(keys))}"
    added = f" (+{override} adds a new key)" if override else ""
    return f"{full_key} is not a key of {where}: {fix}{added}"


def missing_option(error: MissingConfigException) -> str:
    """``data=cifar100 is not an option of data: choose one of cifar10, digits, ...``."""
    group, _, option = str(error.missing_cfg_file or "").rpartition("/")
    options = sorted(str(o) for o in (error.options or []))
    if not group:
        return str(error).strip().splitlines()[0]
    closest = _closest(option, options)
    head = f"{group}={option} is not an option of {group}"
    if closest is None:
        return f"{head}: choose one of {_choices(options)}"
    return f"{head}: did you mean {group}={closest}? ({_choices(options)})"


def _override_of(error: ConfigCompositionException) -> str | None:
    """The ``key=value`` Hydra names in "Could not override ... use +key=value"."""
    for line in str(error).splitlines():
        if "use +" in line:
            return line.split("use +", 1)[1].strip()
    return None


def command_line_error(exc: BaseException) -> str | None:
    """The one line for a command-line mistake Hydra or OmegaConf raised; None for anything else."""
    if isinstance(exc, MissingConfigException):
        return missing_option(exc)
    if isinstance(exc, OverrideParseException):
        first = str(exc.message).strip().splitlines()[0]
        return f"cannot parse the override {exc.override!r} ({first}): quote values with special characters"
    if isinstance(exc, MissingMandatoryValue):
        key = str(exc.full_key)
        return f"{key} is required: add {key}=<value> to the command line"
    cause: Any = exc.__cause__
    if isinstance(exc, ConfigCompositionException):
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and "not in struct" in str(cause):
            return unknown_key(cause, _override_of(exc))
        if isinstance(cause, OmegaConfBaseException):
            return f"{str(exc).strip().splitlines()[0]} {str(cause).strip().splitlines()[0]}"
        return str(exc).strip().splitlines()[0]
    return None


__all__ = ["command_line_error", "missing_option", "unknown_key"]
