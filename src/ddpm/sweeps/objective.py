"""Whether a sweep's ``optimized_metric`` can ever reach its sweeper, read from a composed training config.

``ddpm-train`` returns ``trainer.callback_metrics[optimized_metric]`` at the end of training: only what was
logged with ``self.log`` during training. With this project's modules and callbacks that is

* ``train/loss``, ``train/grad_norm`` (the module) and ``lr-*`` (``LearningRateMonitor``): every step;
* ``val/loss``, ``val/loss_ema``: at each validation, every ``trainer.val_check_interval`` optimizer steps
  across epoch boundaries (``check_val_every_n_epoch: null``); never with ``trainer.limit_val_batches=0``;
* the in-loop evaluation callbacks' ``eval/*`` (FID / IS, NLL, digits score, class accuracy): every
  ``callbacks.<name>.every_n_steps`` steps; their end-of-training evaluation goes to the loggers only.

:func:`metric_problem` names a metric that no job of the config could log (so a sweep is refused before
its first trial); :func:`missing_metric_message` is the line of a trial that logged none. Configs this
module cannot read fully (another module class, a callback it does not know) are never refused.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

VALIDATION_NAMES = ("val/loss", "val/loss_ema")
STOPS = "<stops>"  # in a Problem's reason: "a trial stops" (before the sweep), "the trial stopped" (after)
MODULE_NAMES = ("train/loss", "train/grad_norm")


@dataclass(frozen=True)
class Problem:
    """Why a metric is never logged, and the fix."""

    reason: str
    fix: str


@dataclass(frozen=True)
class Source:
    """Metric names logged by one part of the config (fnmatch patterns), and why never, if so."""

    names: tuple[str, ...]
    problem: Problem | None = None


def select(cfg: Any, key: str) -> Any:
    """``cfg``'s value at a dotted key; None when absent or not resolvable."""
    if not isinstance(cfg, DictConfig):
        return None
    try:
        return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    except Exception:  # an interpolation that cannot resolve outside the job (e.g. ${hydra:...})
        return None


def int_or_none(value: Any) -> int | None:
    """``value`` as an int, None for anything else (floats included: fractions of an epoch)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def stop_step(cfg: DictConfig) -> int | None:
    """The optimizer step training stops at (``trainer.max_steps``); None when unbounded or unknown."""
    steps = int_or_none(select(cfg, "trainer.max_steps"))
    return steps if steps is not None and steps > 0 else None


def validation_source(cfg: DictConfig) -> Source:
    """``val/*``: every ``trainer.val_check_interval`` training batches (optimizer steps)."""
    limit = select(cfg, "trainer.limit_val_batches")
    if limit is not None and not isinstance(limit, bool) and limit == 0:
        off = Problem(
            f"validation is off: trainer.limit_val_batches={limit}", "set trainer.limit_val_batches above 0"
        )
        return Source(VALIDATION_NAMES, off)
    interval = int_or_none(select(cfg, "trainer.val_check_interval"))
    steps = stop_step(cfg)
    every_epoch = select(cfg, "trainer.check_val_every_n_epoch") is not None
    if select(cfg, "trainer.fast_dev_run") or every_epoch or interval is None or steps is None:
        return Source(VALIDATION_NAMES)
    accumulate = int_or_none(select(cfg, "trainer.accumulate_grad_batches")) or 1
    if interval <= steps * accumulate:
        return Source(VALIDATION_NAMES)
    per_step = f" x trainer.accumulate_grad_batches={accumulate} batches" if accumulate > 1 else ""
    late = Problem(
        f"validation runs every trainer.val_check_interval={interval} steps, {STOPS} at "
        f"trainer.max_steps={steps}{per_step}",
        "lower trainer.val_check_interval or raise trainer.max_steps",
    )
    return Source(VALIDATION_NAMES, late)


def class_of(target: Any) -> type | None:
    """The class a ``_target_`` names; None when it cannot be imported."""
    try:
        return get_class(str(target)) if target else None
    except Exception:
        return None


def argument(node: DictConfig, cls: type, name: str) -> Any:
    """A callback's constructor argument: from its config, else the constructor's default."""
    if name in node:
        return select(node, name)
    parameter = inspect.signature(cls).parameters.get(name)
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def evaluation_names(node: DictConfig, cls: type) -> tuple[str, ...]:
    """The ``eval/*`` names an in-loop evaluation callback logs (patterns where the sampler names them)."""
    from ddpm.callbacks import FIDCallback, NLLCallback, SampleGridCallback
    from ddpm.digits_score import DigitsScoreCallback

    prefix = argument(node, cls, "prefix") or "eval/"
    if issubclass(cls, DigitsScoreCallback):
        count = argument(node, cls, "num_samples")
        return tuple(f"eval/digits_{key}_{count}" for key in ("score", "frechet", "confidence"))
    if issubclass(cls, FIDCallback):
        optional = {"kid": ("kid",), "precision_recall": ("precision", "recall")}
        kinds = ["fid", "is"]
        for flag, names in optional.items():
            kinds += list(names) if select(node, f"metrics.{flag}") else []
        return tuple(f"{prefix}{kind}_*" for kind in kinds)
    if issubclass(cls, NLLCallback):
        return (f"{prefix}nll_*",)
    if issubclass(cls, SampleGridCallback):
        return ("eval/class_accuracy_*",) if argument(node, cls, "score_digits") else ()
    return (f"{prefix}*",)


def evaluation_source(name: str, node: DictConfig, cls: type, steps: int | None) -> Source:
    """An in-loop evaluation callback: logged every ``every_n_steps`` steps (not at the end)."""
    names = evaluation_names(node, cls)
    every = int_or_none(argument(node, cls, "every_n_steps"))
    key = f"callbacks.{name}.every_n_steps"
    if every is not None and every <= 0:
        problem = Problem(
            f"callbacks.{name} evaluates only at the end of training, for the loggers, not the sweeper",
            f"set {key} to at most trainer.max_steps" + (f"={steps}" if steps else ""),
        )
        return Source(names, problem)
    if every is None or steps is None or every <= steps:
        return Source(names)
    late = Problem(
        f"callbacks.{name} evaluates every {key}={every} steps, {STOPS} at trainer.max_steps={steps}",
        f"lower {key} or raise trainer.max_steps",
    )
    return Source(names, late)


def callback_sources(cfg: DictConfig) -> tuple[list[Source], bool]:
    """The metric sources among the configured callbacks, and whether every callback is a known one."""
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar

    from ddpm.callbacks import DivergenceGuard, LossCurveCallback, PreemptionCheckpoint
    from ddpm.callbacks.periodic import PeriodicEMACallback

    silent = (ModelCheckpoint, ProgressBar, DivergenceGuard, LossCurveCallback, PreemptionCheckpoint)
    callbacks = select(cfg, "callbacks")
    sources, known = [], True
    for name, node in callbacks.items() if isinstance(callbacks, DictConfig) else []:
        cls = class_of(select(node, "_target_")) if isinstance(node, DictConfig) else None
        if cls is None:
            known = known and not (isinstance(node, DictConfig) and "_target_" in node)
        elif issubclass(cls, LearningRateMonitor):
            sources.append(Source(("lr-*",)))
        elif issubclass(cls, silent):
            continue
        elif issubclass(cls, PeriodicEMACallback):
            sources.append(evaluation_source(str(name), node, cls, stop_step(cfg)))
        else:
            known = False
    return sources, known


def metric_sources(cfg: DictConfig) -> tuple[list[Source], bool]:
    """Every metric source of a training config, and whether the list is complete (all classes known)."""
    from ddpm.lightning import DDPMLitModule

    module_known = class_of(select(cfg, "module._target_")) is DDPMLitModule
    sources, callbacks_known = callback_sources(cfg)
    return [Source(MODULE_NAMES), validation_source(cfg), *sources], module_known and callbacks_known


def why_never_logged(cfg: DictConfig) -> Problem | None:
    """Why ``cfg.optimized_metric`` never reaches a sweeper from a job of ``cfg``; None if it may."""
    metric = select(cfg, "optimized_metric")
    if not metric or not isinstance(metric, str):
        return None
    sources, complete = metric_sources(cfg)
    matching = [s for s in sources if any(fnmatchcase(metric, name) for name in s.names)]
    if not matching:
        if not complete:
            return None
        logged = ", ".join(name for s in sources if s.problem is None for name in s.names)
        return Problem(
            f"nothing in this config logs it; it logs {logged}", "set optimized_metric to one of these"
        )
    problems = [s.problem for s in matching]
    return None if any(p is None for p in problems) else problems[0]


def metric_problem(cfg: DictConfig) -> str | None:
    """One line naming why no job of ``cfg`` can log ``optimized_metric``, and the fix; None if one can."""
    problem = why_never_logged(cfg)
    if problem is None:
        return None
    reason = problem.reason.replace(STOPS, "a trial stops")
    return f"optimized_metric={select(cfg, 'optimized_metric')} is never logged ({reason}): {problem.fix}"


def missing_metric_message(number: int, metric: str, cfg: DictConfig | None) -> str:
    """The line of trial ``number``, whose job (config ``cfg``, if known) ended without logging ``metric``."""
    problem = why_never_logged(cfg) if cfg is not None else None
    if problem is not None:
        reason = problem.reason.replace(STOPS, "the trial stopped")
        return f"trial {number} logged no {metric} ({reason}): {problem.fix}"
    return (
        f"trial {number} logged no {metric} (its job ended without logging it; see its log): make the jobs "
        f"log {metric} before they end, or set optimized_metric=<a metric they log>"
    )


__all__ = ["Problem", "metric_problem", "missing_metric_message", "why_never_logged"]
