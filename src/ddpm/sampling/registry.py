"""The samplers by name: :func:`make_sampler` builds the Hydra ``sampler`` group's ``<name>.yaml``.

The yaml files of ``configs/sampler/`` are the one table of samplers and their defaults: each names its
class (``_target_``, built as ``sampler(diffusion)``: ``_partial_: true``) and its settings, optionally
on top of other yamls of the group (a ``defaults`` list of their names and ``_self_``, merged in that
order as Hydra composes it; ``_self_`` is last when not listed). So a sampler is one class and one yaml,
and ``make_sampler("<name>")`` and ``sampler=<name>`` build the same object (docs/samplers.md lists
them). This module reads the yaml with OmegaConf and imports the class itself: the sampling maths stays
free of Hydra.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ddpm.diffusion.denoiser import NullCond, null_labels
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling.base import Sampler
from ddpm.sampling.guidance import with_guidance
from ddpm.utils.config import config_dir

GROUP = "sampler"  # the config group: <configs>/sampler/<name>.yaml


def _group_dir(configs: str | Path | None) -> Path:
    return (config_dir() if configs is None else Path(configs)) / GROUP


def sampler_names(configs: str | Path | None = None) -> list[str]:
    """The names of the sampler yamls under ``configs`` (default: the shipped ``configs/``), sorted."""
    return sorted(path.stem for path in _group_dir(configs).glob("*.yaml"))


def _compose(group: Path, name: str, parents: tuple[str, ...] = ()) -> DictConfig:
    """``<group>/<name>.yaml`` merged over the yamls its ``defaults`` list names (Hydra's order)."""
    if name in parents:
        raise ConfigError(f"sampler configs include each other in a loop: {' -> '.join([*parents, name])}")
    node = OmegaConf.load(group / f"{name}.yaml")
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{group / name}.yaml must be a mapping of sampler settings")
    defaults = node.pop("defaults", [])
    if not isinstance(defaults, ListConfig | list) or not all(isinstance(d, str) for d in defaults):
        raise ConfigError(f"{group / name}.yaml: its defaults list may only name other sampler configs")
    parts = [node if entry == "_self_" else _compose(group, entry, (*parents, name)) for entry in defaults]
    if "_self_" not in defaults:
        parts.append(node)
    return OmegaConf.merge(*parts)


def sampler_config(name: str, configs: str | Path | None = None) -> dict[str, Any]:
    """The settings of sampler ``name`` (``-`` may stand for ``_``, ``++`` for ``_pp``) as Hydra composes
    them, ``_target_`` and ``_partial_`` included; an unknown name lists the known ones."""
    key = name.lower().replace("-", "_").replace("++", "_pp")
    names = sampler_names(configs)
    if key not in names:
        raise ConfigError(f"unknown sampler {name!r}: choose one of {', '.join(names)}")
    return OmegaConf.to_container(_compose(_group_dir(configs), key), resolve=True)  # type: ignore[return-value]


def _target(path: str) -> type[Sampler]:
    """The class a ``_target_`` names, imported as Hydra's ``instantiate`` would (a module path and an
    attribute), without importing Hydra."""
    module, _, attribute = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"sampler _target_ {path!r} cannot be imported: {exc}") from None


def sampler_settings(name: str, configs: str | Path | None = None) -> tuple[type[Sampler], dict[str, Any]]:
    """``(class, default settings)`` of sampler ``name``: its yaml without the ``_`` keys."""
    config = sampler_config(name, configs)
    if "_target_" not in config or config.get("_partial_") is not True:
        raise ConfigError(
            f"sampler config {name!r} needs _target_ (its class) and _partial_: true (it is built as "
            "sampler(diffusion))"
        )
    return _target(config["_target_"]), {k: v for k, v in config.items() if not k.startswith("_")}


def make_sampler(
    name: str,
    diffusion: GaussianDiffusion,
    *,
    guidance_scale: float | None = None,
    null_cond: NullCond = null_labels,
    configs: str | Path | None = None,
    **settings: Any,
) -> Sampler:
    """Build sampler ``name`` (``configs/sampler/<name>.yaml``; see :func:`sampler_config`) for ``diffusion``.

    ``settings`` override the yaml's defaults, e.g. ``make_sampler("ddim", d, steps=100, eta=0.5)``;
    ``guidance_scale=w`` wraps it in classifier-free guidance (:mod:`ddpm.sampling.guidance`; None: none)
    with the null conditioning ``null_cond`` (class labels' null class by default). ``configs`` is
    another configs directory holding a ``sampler/`` group (default: the shipped one).
    """
    cls, defaults = sampler_settings(name, configs)
    return with_guidance(cls(diffusion, **{**defaults, **settings}), guidance_scale, null_cond)


__all__ = ["make_sampler", "sampler_config", "sampler_names", "sampler_settings"]
