"""What a ``ddpm-eval`` evaluation is and what its numbers depend on: its settings, its job, its record.

:class:`EvalSettings` says what to compute (the samples and their draws, FID / IS / KID / PR and their
Inception settings, the NLL); :class:`EvalJob` holds the model, its sampler, its conditioning and its data
on one device; :func:`protocol_record` writes down everything the numbers depend on, for ``report.json``.
The stages that compute them: :mod:`ddpm.evaluation.pipeline`.

Several disjoint seed ranges ("draws") are evaluated in one command: draw k uses seeds ``seeds[k] + i``
for its samples ``i = 0..N-1`` (:func:`draw_seeds`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ddpm.diffusion.denoiser import LABELS_KEY, Cond
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.evaluation.fid_is import FIDSettings
from ddpm.evaluation.generation import GenerationSettings
from ddpm.evaluation.nll import NLLSettings
from ddpm.io.shards import ShardStore
from ddpm.metrics.kid_pr import kid_subset_size
from ddpm.utils.fingerprint import describe_labels, describe_sampler, describe_tensor, module_digest
from ddpm.weights.loaded import LoadedModel


def draw_seeds(seed: int, num_samples: int, num_draws: int = 1, seeds: list[int] | None = None) -> list[int]:
    """The first seed of each draw: ``seeds`` if given, else ``seed + k * num_samples`` for k < num_draws.

    Draws must be disjoint: the seed ranges ``[s, s + num_samples)`` may not overlap.
    """
    chosen = [int(s) for s in seeds] if seeds else [seed + k * num_samples for k in range(num_draws)]
    if not chosen:
        raise ConfigError("no draw to evaluate: num_draws must be >= 1")
    ordered = sorted(chosen)
    for a, b in itertools.pairwise(ordered):
        if b - a < num_samples:
            raise ConfigError(
                f"seed ranges [{a}, {a + num_samples}) and [{b}, {b + num_samples}) overlap: "
                f"draws need seeds at least num_samples={num_samples} apart"
            )
    return chosen


@dataclass(frozen=True)
class EvalSettings:
    """What to compute: the samples (``seeds``: the first seed of each draw; empty: one draw from
    ``generation.seed``), FID and/or IS under the Inception protocol, and the NLL (or not)."""

    generation: GenerationSettings
    fid_is: FIDSettings
    nll: NLLSettings | None = None
    fid: bool = True
    inception_score: bool = True
    progress: bool = True
    seeds: tuple[int, ...] = ()
    digits_score: bool = False  # the digits score of the samples (a model of the digits)

    @property
    def needs_inception(self) -> bool:
        return self.fid or self.inception_score or self.fid_is.needs_features

    @property
    def computes_anything(self) -> bool:
        return self.needs_inception or self.fid_is.needs_vgg16 or self.nll is not None or self.digits_score

    @property
    def needs_references(self) -> bool:
        """FID, KID or precision/recall: the metrics that compare with the reference splits."""
        return self.fid or self.fid_is.needs_features or self.fid_is.needs_vgg16

    @property
    def first_seeds(self) -> list[int]:
        """The first seed of each draw."""
        return list(self.seeds) or [self.generation.seed]


@dataclass
class EvalJob:
    """The model to evaluate, its sampler and dataset, on one device.

    ``cond`` (class-conditional models): the conditioning of the samples ``0..N-1`` of every draw, a dict
    of per-sample tensors, e.g. ``{"class_labels": i % num_classes}`` (the class-conditional protocol);
    None for unconditional samples. ``pretrained``: the released-weights preset named on the command
    line, whose dataset picks the published numbers.
    """

    loaded: LoadedModel
    net: nn.Module
    diffusion: GaussianDiffusion
    sampler: Any
    datamodule: Any
    device: torch.device
    digest: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    cond: dict[str, Tensor] | None = None
    # the network call used for sampling when it differs from ``net`` (ddpm-eval compile=true)
    sampling_net: nn.Module | None = None
    pretrained: str | None = None

    def __post_init__(self) -> None:
        self.digest = self.digest or module_digest(self.net)


def describe_cond(cond: Cond | None) -> dict[str, Any]:
    """The samples' conditioning as parts of their fingerprint: class labels under ``labels`` (counts per
    class and a hash), any other tensor under its own key (shape and hash); nothing when unconditional."""
    parts: dict[str, Any] = {}
    for key, value in sorted((cond or {}).items()):
        if key == LABELS_KEY:
            parts["labels"] = describe_labels(value)
        else:
            parts[key] = describe_tensor(value)
    return parts


def protocol_record(
    job: EvalJob, settings: EvalSettings, store: ShardStore, fid_is: dict[str, Any]
) -> dict[str, Any]:
    """Everything the numbers depend on, for ``report.json`` (no timings: a resumed run writes the same)."""
    loaded = job.loaded
    return {
        "checkpoint": loaded.source,
        "kind": loaded.kind,
        "weights": loaded.weights,
        "pretrained": loaded.preset,
        "notes": loaded.notes,
        "num_samples": settings.generation.num_samples,
        "seed": settings.generation.seed,
        "image_shape": list(loaded.image_shape),
        "sampler": describe_sampler(job.sampler),
        "var_type": job.diffusion.var_type,
        "fingerprint": store.fingerprint,
        "inception": fid_is.get("inception"),
        "is_splits": list(settings.fid_is.is_splits),
        "is_shuffle_seed": settings.fid_is.is_shuffle_seed,
        "references": fid_is.get("references", {}),
        "device_type": job.device.type,
        **_feature_protocol(settings.fid_is, settings.generation.num_samples, fid_is),
        **_conditional_protocol(job),
    }


def _conditional_protocol(job: EvalJob) -> dict[str, Any]:
    """The class-conditional protocol (labels, guidance scale), when the samples have labels."""
    labels = (job.cond or {}).get(LABELS_KEY)
    if labels is None:
        return {}
    num_classes = int(job.net.num_classes)
    balanced = torch.equal(labels, torch.arange(labels.numel()) % num_classes)
    return {
        "class_conditional": {
            "num_classes": num_classes,
            "labels": "i % num_classes (class-balanced)" if balanced else "given",
            "guidance_scale": getattr(job.sampler, "guidance_scale", None),
            **describe_labels(labels),
        }
    }


def _feature_protocol(settings: FIDSettings, num_samples: int, fid_is: dict[str, Any]) -> dict[str, Any]:
    """The KID / precision-recall settings, when those metrics are on (absent otherwise)."""
    references = fid_is.get("references", {})
    out: dict[str, Any] = {}
    if settings.kid:
        out["kid"] = _kid_protocol(settings, num_samples, references)
    if settings.precision_recall:
        out["precision_recall"] = {
            "features": settings.pr_feature_space,
            "k": settings.pr_neighbours,
            # precision/recall depend on both set sizes: compare numbers taken with the same ones only
            "sizes": {
                split: {"generated": num_samples, "real": ref["num_images"]}
                for split, ref in references.items()
            },
        }
        if settings.needs_vgg16:
            out["precision_recall"]["vgg16"] = fid_is.get("vgg16")
    return out


def _kid_protocol(
    settings: FIDSettings, num_samples: int, references: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """KID's settings. Its ``subset_size`` is the m its subsets had (per reference split when they
    differ): fewer samples or reference images than ``kid_subset_size`` make it smaller
    (``subset_size_requested`` then says so)."""
    used = {
        split: kid_subset_size(num_samples, ref["num_images"], settings.kid_subset_size)
        for split, ref in references.items()
    }
    sizes = set(used.values()) or {kid_subset_size(num_samples, num_samples, settings.kid_subset_size)}
    kid: dict[str, Any] = {
        "subsets": settings.kid_subsets,
        "subset_size": sizes.pop() if len(sizes) == 1 else used,
        "seed": settings.kid_seed,
    }
    if used and min(used.values()) < settings.kid_subset_size:
        kid["subset_size_requested"] = settings.kid_subset_size
    return {**kid, "kernel": "polynomial, degree 3, gamma 1/dim, coef0 1", "estimator": "unbiased"}


__all__ = ["EvalJob", "EvalSettings", "describe_cond", "draw_seeds", "protocol_record"]
