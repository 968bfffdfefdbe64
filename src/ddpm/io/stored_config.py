"""A config read from a file is data: objects are built from it only through an allowlist.

Checkpoints load with ``torch.load(weights_only=True)``, so reading one runs no code. The run config a
``ddpm-train`` checkpoint stores (``ddpm_config``) is another matter: given to ``hydra.utils.instantiate``,
its ``_target_`` strings would pick any importable callable and its arguments (``numpy.load`` with
``allow_pickle`` on a pickle beside the checkpoint runs that pickle; ``shutil.copy`` copies files), so
the file, not this code, would choose what runs. :func:`instantiate_stored` first checks every
``_target_`` in the config, at any depth, against :data:`ALLOWED_TARGETS` (exact names, no prefixes:
``ddpm.io.atomic.atomic_write_json`` is ours and still a way to write files) and builds nothing if one
is not listed (a researcher's own classes join it from the command line, :func:`trust_targets`,
as ``torch.serialization.add_safe_globals`` does for pickles). It also keeps every ``${`` of the stored
strings as text: ``ddpm-train`` stores its configs resolved, so an interpolation there is data, and
resolving it (``${oc.env:...}``) would let the file call resolvers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import hydra
from omegaconf import OmegaConf

from ddpm.errors import CheckpointError

# Hydra's own target blocklist is no boundary: it refuses a list of known-dangerous modules and lets
# every other importable callable through, and many of those read pickles, write files or run commands.

# Every _target_ that the shipped configs (configs/) put under the groups that are rebuilt from a stored
# config: ``module`` (its net, diffusion, loss, optimizer, timestep sampler) and ``data`` from a
# checkpoint's ddpm_config, ``sampler`` from a run's .hydra/config.yaml (benchmarks/quickstart_cost.py).
# Callbacks, loggers and the trainer are only ever built from the command line's config, so they are
# not listed (tests/io/test_stored_config.py checks both directions against the shipped configs).
ALLOWED_TARGETS: frozenset[str] = frozenset(
    {
        "ddpm.lightning.DDPMLitModule",
        "ddpm.models.UNet",
        "ddpm.diffusion.GaussianDiffusion",
        "ddpm.diffusion.SimpleLoss",
        "ddpm.diffusion.losses.VLBLoss",
        "ddpm.diffusion.losses.HybridLoss",
        "ddpm.diffusion.timestep_sampler.LossAwareTimestepSampler",
        "torch.optim.Adam",
        "ddpm.data.DigitsDataModule",
        "ddpm.data.CIFAR10DataModule",
        "ddpm.data.LSUNDataModule",
        "ddpm.data.ImageFolderDataModule",
        "ddpm.sampling.AncestralSampler",
        "ddpm.sampling.DDIMSampler",
        "ddpm.sampling.DPMSolverPPSampler",
        "ddpm.sampling.HeunSampler",
    }
)

# A researcher's own classes (a network of theirs stored in their checkpoints), trusted for this process
# by their own command line (``trusted_targets=[...]``, read by every entry point) or Python code: never
# by the file being read.
_TRUSTED_TARGETS: set[str] = set()

TARGET_KEY = "_target_"
# objects built from a stored config get plain values (``_convert_="all"``, see _literal): a stored
# ``_convert_`` would change how often its strings are read, so it is refused (no shipped config sets it)
CONVERT_KEY = "_convert_"
# deeper than any config we write (about 4 levels); a self-referencing container ends here too
MAX_DEPTH = 32
CHECKPOINT_FIX = "use a checkpoint written by ddpm-train"
NOT_OURS = "is not a class of this project"
TRUST_KEY = "trusted_targets"  # the entry points' key of the names given to trust_targets

# a run of backslashes before "${": OmegaConf reads 2k backslashes + "${" as k backslashes and an
# interpolation, 2k+1 as k backslashes and a literal "${"
_INTERPOLATION = re.compile(r"(\\*)\$\{")
_NAME = re.compile(r"[A-Za-z0-9_.]+")


class StoredConfigError(CheckpointError):
    """A config read from a file names something this project does not build from files."""


def _show(value: Any) -> str:
    """``value`` for a one-line message: a dotted name as it is, anything else as a short repr."""
    if type(value) is str and _NAME.fullmatch(value) and len(value) <= 120:
        return value
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _children(node: Any, path: str) -> list[tuple[str, Any]]:
    """``(key path, value)`` of each entry of a mapping (``path.key``) or a list (``path[i]``)."""
    if isinstance(node, Mapping):
        return [(f"{path}.{_show(key)}", value) for key, value in node.items()]
    if isinstance(node, list | tuple):
        return [(f"{path}[{i}]", value) for i, value in enumerate(node)]
    return []


def trust_targets(names: Iterable[str]) -> None:
    """Let stored configs build these classes too (exact dotted names, for this process)."""
    for name in names:
        if type(name) is not str or not _NAME.fullmatch(name) or "." not in name:
            raise StoredConfigError(
                f"{TRUST_KEY}: {_show(name)} is not a dotted class name: give names like mypkg.nets.MyUNet"
            )
        _TRUSTED_TARGETS.add(name)


def is_allowed(target: Any) -> bool:
    """Whether a stored ``_target_`` may be built: one of this project's classes or one trusted."""
    return type(target) is str and (target in ALLOWED_TARGETS or target in _TRUSTED_TARGETS)


def _refused(node: Any, path: str, depth: int = 0) -> str | None:
    """Why ``node`` (at ``path``) cannot be built, naming the first refused key path; None if it can.

    Walks mappings, lists and tuples at every depth (inside ``_args_``, whatever ``_partial_`` or
    ``_recursive_`` say); a ``_target_`` that is not a string is refused too, and so is a ``_convert_``.
    """
    if depth > MAX_DEPTH:
        return f"{path} is nested more than {MAX_DEPTH} levels deep"
    if isinstance(node, Mapping) and TARGET_KEY in node:
        target = node[TARGET_KEY]
        if not is_allowed(target):
            return f"{path}.{TARGET_KEY} = {_show(target)} {NOT_OURS}"
    if isinstance(node, Mapping) and CONVERT_KEY in node:
        return (
            f"{path}.{CONVERT_KEY} = {_show(node[CONVERT_KEY])} is set, which no config of this project does"
        )
    for child_path, value in _children(node, path):
        reason = _refused(value, child_path, depth + 1)
        if reason is not None:
            return reason
    return None


def check_stored(node: Any, source: str | Path, key: str, fix: str = CHECKPOINT_FIX) -> None:
    """Raise :class:`StoredConfigError` (one line naming the key path and the target) unless ``node``
    is a mapping with a ``_target_``, every ``_target_`` in it, at any depth, is allowed (:func:`is_allowed`),
    and none of its mappings sets ``_convert_``."""
    if not isinstance(node, Mapping) or TARGET_KEY not in node:
        raise StoredConfigError(f"{source}: {key} is not a config with a _target_; nothing to build: {fix}")
    reason = _refused(node, key)
    if reason is not None:
        if reason.endswith(NOT_OURS):
            fix += f" (your own class, in a file you trust: name it in {TRUST_KEY}=[...])"
        raise StoredConfigError(f"{source}: {reason}; refusing to build it (nothing was run): {fix}")


def _escaped(text: str) -> str:
    """``text`` as an OmegaConf string that reads back as ``text`` (every ``${`` escaped)."""
    return _INTERPOLATION.sub(lambda m: m.group(1) * 2 + "\\${", text)


def _literal(value: Any) -> Any:
    """A copy of a plain config tree whose strings reach the built objects unchanged.

    With ``_convert_="all"``, ``hydra.utils.instantiate`` reads every string twice: ``OmegaConf.resolve``
    rewrites the config in place (an escaped ``\\${`` becomes a bare ``${``), then the values are read
    again into the plain arguments of the target. So each string is escaped twice. (With Hydra's default
    ``_convert_="none"`` a string inside a list or dict argument is stored and read a third time, by the
    target: hence ``all``.) tests/io/test_stored_config.py checks the round trip at every position.
    """
    if isinstance(value, str):
        return _escaped(_escaped(value))
    if isinstance(value, Mapping):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_literal(v) for v in value]
    return value


def instantiate_stored(
    node: Any, source: str | Path, key: str, fix: str = CHECKPOINT_FIX, **overrides: Any
) -> Any:
    """``hydra.utils.instantiate`` of a config read from a file (``source``), at ``key`` in it.

    Every ``_target_`` is checked first (:func:`check_stored`) and its strings stay literal, so use it
    for configs that came from a file only, never for one composed from the command line. The objects
    get plain lists and dicts (``_convert_="all"``). ``overrides`` (the caller's own values) replace
    top-level arguments, as in ``instantiate(config, **kwargs)``.
    """
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=False)
    check_stored(node, source, key, fix)
    try:
        config = OmegaConf.create(_literal(node))
    except Exception as exc:  # a value no config holds (a tensor, ...): nothing was built
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise StoredConfigError(
            f"{source}: {key} is not a plain config ({type(exc).__name__}: {first[:200]}): {fix}"
        ) from None
    return hydra.utils.instantiate(config, **{**overrides, CONVERT_KEY: "all"})


__all__ = [
    "ALLOWED_TARGETS",
    "StoredConfigError",
    "check_stored",
    "instantiate_stored",
    "is_allowed",
    "trust_targets",
]
