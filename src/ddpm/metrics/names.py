"""The one function that names every metric:
``{metric}[_{features}][_{count}][_{tag}][_{split}][_{detail}]``.

A name states the protocol of its number, so that numbers taken under different protocols never share a
name: the feature space where a metric can be taken in several (precision/recall: ``inception`` pool-3 as
the ADM evaluator, or ``vgg16`` fc2 as Kynkaenniemi et al. and torch-fidelity), the number of images (FID of
10k samples is biased upwards against FID of 50k), what differs from the paper's sampling protocol
(:func:`protocol_tag`: the sampler and its steps ``ddim50``, raw weights, another variance, guidance), the
dataset split compared with, and a detail (IS splits, a std). E.g. ``fid_50k_train`` (the paper's Table 1:
its protocol only), ``fid_50k_ddim50_train``, ``fid_10k_ddim100_train`` (in-loop), ``is_50k_10splits``,
``kid_10k_train_std``, ``precision_vgg16_50k_train``, ``nll_bpd_test``, ``digits_score_256``,
``class_accuracy_w3``.
"""

from __future__ import annotations

from typing import Any

PAPER_STEPS = 1000  # the paper samples with every one of its T = 1000 steps


def count_label(n: int) -> str:
    """50000 -> '50k', 2500 -> '2.5k', 64 -> '64': the number of images in metric names."""
    if n >= 1000 and n % 100 == 0:
        return f"{n / 1000:g}k"
    return str(n)


def sampler_tag(sampler: Any) -> str:
    """'' for the paper's sampler (ancestral, all 1000 steps); else e.g. 'ancestral100', 'ddim50'."""
    from ddpm.sampling import AncestralSampler

    steps = getattr(sampler, "num_steps", None)
    if isinstance(sampler, AncestralSampler) and steps == PAPER_STEPS:
        return ""
    name = type(sampler).__name__.removesuffix("Sampler").lower()
    return f"{name}{steps}" if steps is not None else name


def protocol_tag(
    sampler: Any,
    *,
    raw_weights: bool = False,
    var_type: str | None = None,
    paper_var_type: str | None = None,
    conditional: bool = False,
) -> str:
    """'' for the paper's sampling protocol (EMA weights, every step of ancestral sampling, the paper's
    variance for the dataset, unconditional); else what differs, e.g. 'ddim50', 'raw', 'fixedsmall',
    'ancestral100_w3' ('w3': guidance scale 3, 'cond': class-conditional without guidance)."""
    inner = getattr(sampler, "sampler", sampler)  # a guided sampler names the sampler it guides
    parts = [sampler_tag(inner)]
    if var_type and paper_var_type and var_type != paper_var_type:
        parts.append(var_type.replace("_", ""))
    if raw_weights:
        parts.append("raw")
    if hasattr(sampler, "guidance_scale"):
        parts.append(scale_name(sampler.guidance_scale))
    elif conditional:
        parts.append("cond")
    return "_".join(part for part in parts if part)


def splits_label(splits: int) -> str:
    """'10splits', '1split': the IS split count in metric names."""
    return f"{splits}split{'s' if splits > 1 else ''}"


def scale_name(scale: float | None) -> str:
    """'w0', 'w1', 'w3.5' ('none' for no guidance): a guidance scale in file and metric names."""
    return "none" if scale is None else f"w{float(scale):g}"


def metric_name(
    metric: str,
    num: int | None = None,
    split: str | None = None,
    *,
    tag: str = "",
    detail: str = "",
    features: str = "",
) -> str:
    """``metric`` named with its protocol; each part is left out when not given.

    :param metric: what is measured: ``fid``, ``is``, ``kid``, ``precision``, ``nll_bpd``, ...
    :param features: the feature space it was taken in, where it names one (``inception``, ``vgg16``).
    :param num: the number of images it was taken from (written by :func:`count_label`).
    :param split: the dataset split it was compared with or taken on (``train``, ``test``).
    :param tag: what differs from the paper's protocol (:func:`protocol_tag`; '' for the paper's).
    :param detail: what follows the split: the IS splits (:func:`splits_label`), ``std``, ...
    :return: e.g. ``metric_name("fid", 10000, "train", tag="ddim50")`` -> ``fid_10k_ddim50_train``.
    """
    parts = (metric, features, count_label(num) if num is not None else "", tag, split or "", detail)
    return "_".join(part for part in parts if part)


# metrics where a larger number is better (every other one: lower is better, as FID, KID, losses, NLL)
HIGHER_IS_BETTER = ("is", "precision", "recall", "digits_score", "digits_confidence", "class_accuracy")


def higher_is_better(name: str) -> bool:
    """Whether a larger value of metric ``name`` is better (``is_50k_10splits``, ``eval/precision_...``)."""
    base = name.rsplit("/", 1)[-1]
    return any(base == kind or base.startswith(f"{kind}_") for kind in HIGHER_IS_BETTER)


__all__ = [
    "HIGHER_IS_BETTER",
    "count_label",
    "higher_is_better",
    "metric_name",
    "protocol_tag",
    "sampler_tag",
    "scale_name",
    "splits_label",
]
