"""``ddpm-eval``'s stages, one job each: generate the samples, draw the grid, FID/IS/KID/PR, NLL, the report.

Several disjoint seed ranges ("draws") are evaluated in one command: draw k uses seeds ``seeds[k] + i``
for its samples ``i = 0..N-1`` and lives in its own folder (draw 0 in the run directory itself, draw k
in ``draws/seed{seeds[k]}``), each resumable with its own fingerprint.

Each stage takes the :class:`EvalJob` (the model and its data) and the small settings objects of
:class:`EvalSettings`; every stage is resumable or cheap to redo, so an interrupted evaluation rerun in
the same directory gives the same report.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ddpm.diffusion.denoiser import LABELS_KEY
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.evaluation.distributed import barrier
from ddpm.evaluation.fid_is import (
    FIDSettings,
    feature_scores,
    fid_against,
    reference_for,
    store_statistics,
    stored_features,
)
from ddpm.evaluation.generation import (
    GenerationSettings,
    describe_sampler,
    generate_shards,
    generation_fingerprint,
    module_digest,
    read_images,
    sample_store,
)
from ddpm.evaluation.inception import InceptionFeatureExtractor
from ddpm.evaluation.metrics import count_label
from ddpm.evaluation.nll import NLLSettings, dataset_nll_resumable
from ddpm.evaluation.reference_stats import ReferenceSet, describe_datamodule, split_dataset
from ddpm.io.shards import ShardStore
from ddpm.utils.images import save_image_grid
from ddpm.weights.released import LoadedModel


@dataclass(frozen=True)
class EvalSettings:
    """What to compute: the samples, FID and/or IS under the Inception protocol, and the NLL (or not)."""

    generation: GenerationSettings
    fid_is: FIDSettings
    nll: NLLSettings | None = None
    fid: bool = True
    inception_score: bool = True
    progress: bool = True

    @property
    def needs_inception(self) -> bool:
        return self.fid or self.inception_score or self.fid_is.needs_features

    @property
    def needs_references(self) -> bool:
        return self.fid or self.fid_is.needs_features


@dataclass
class EvalJob:
    """The model to evaluate, its sampler and dataset, on one device.

    ``labels`` (class-conditional models): the class of sample i of every draw, int64 [N] (the
    class-conditional protocol's ``i % num_classes``); None for unconditional samples.
    """

    loaded: LoadedModel
    net: nn.Module
    diffusion: GaussianDiffusion
    sampler: Any
    datamodule: Any
    device: torch.device
    digest: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    labels: Tensor | None = None
    # the network call used for sampling when it differs from ``net`` (ddpm-eval compile=true)
    sampling_net: nn.Module | None = None

    def __post_init__(self) -> None:
        self.digest = self.digest or module_digest(self.net)


@contextmanager
def timed(job: EvalJob, name: str) -> Iterator[None]:
    """Add the wall time of a block to ``job.timings[name]``."""
    start = time.perf_counter()
    yield
    job.timings[name] = job.timings.get(name, 0.0) + time.perf_counter() - start


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


def draw_dir(out_dir: Path, draw: int, seed: int) -> Path:
    """Draw 0 in the run directory (as a one-draw evaluation), draw k in ``draws/seed{seed}``."""
    return out_dir if draw == 0 else out_dir / "draws" / f"seed{seed}"


def generate_stage(
    job: EvalJob, settings: GenerationSettings, out_dir: Path, progress: bool
) -> tuple[ShardStore, list[int]]:
    """Generate (or resume) every sample in ``out_dir/samples``; returns the store and this rank's shards."""
    conditional = {} if job.labels is None else {"labels": describe_labels(job.labels)}
    fingerprint = generation_fingerprint(
        weights=job.digest,
        sampler=describe_sampler(job.sampler),
        image_shape=list(job.loaded.image_shape),
        seed=settings.seed,
        num_samples=settings.num_samples,
        shard_size=settings.shard_size,
        device_type=job.device.type,
        **conditional,
    )
    store = sample_store(out_dir / "samples", fingerprint, settings)
    with timed(job, "generation_s"):
        mine = generate_shards(
            job.sampling_net or job.net,
            job.sampler,
            store,
            image_shape=job.loaded.image_shape,
            settings=settings,
            device=job.device,
            progress=progress,
            cond=None if job.labels is None else {LABELS_KEY: job.labels},
        )
        barrier()
    return store, mine


def describe_labels(labels: Tensor) -> dict[str, Any]:
    """The class labels of the samples, for the fingerprint and the report: counts per class and a hash."""
    counts = torch.bincount(labels).tolist()
    digest = hashlib.sha256(labels.to(torch.int64).numpy().tobytes()).hexdigest()[:16]
    return {"num_labels": int(labels.numel()), "per_class": counts, "sha256": digest}


def save_grid(store: ShardStore, num_images: int, path: Path) -> Path | None:
    """The first ``num_images`` samples as one PNG grid (rank 0 calls this)."""
    if num_images <= 0:
        return None
    chunks, count = [], 0
    for _, images in read_images(store, range(store.num_shards)):
        chunks.append(images)
        count += images.shape[0]
        if count >= num_images:
            break
    return save_image_grid(torch.cat(chunks)[:num_images].float() / 127.5 - 1.0, path)


@dataclass
class Inception:
    """The Inception network and the reference splits (statistics, features), loaded once for all draws."""

    extractor: Any
    references: dict[str, ReferenceSet]

    def record(self) -> dict[str, Any]:
        """What the metrics were taken from, for the report (and the cache hits, for ``run_info.json``)."""
        refs = {
            split: {"dataset": r.key.dataset, "num_images": r.key.num_images, "key": r.key.digest()}
            for split, r in self.references.items()
        }
        inception = {"sha256": self.extractor.weights_sha256, "official": self.extractor.official}
        hits = {split: r.hit for split, r in self.references.items()}
        return {"references": refs, "cache_hits": hits, "inception": inception}


def inception_stage(job: EvalJob, settings: EvalSettings, inception_path: Path) -> Inception:
    """The Inception network and the statistics (and features, for KID/PR) of each reference split."""
    extractor = InceptionFeatureExtractor(inception_path).to(job.device)
    references = {}
    for split in settings.fid_is.reference_splits if settings.needs_references else ():
        with timed(job, f"reference_{split}_s"):
            references[split] = reference_for(
                job.datamodule,
                split,
                extractor,
                settings.fid_is,
                device=job.device,
                progress=settings.progress,
            )
    return Inception(extractor, references)


def fid_is_stage(
    job: EvalJob, settings: EvalSettings, store: ShardStore, shards: list[int], inception: Inception
) -> dict[str, float]:
    """IS of one draw's samples and their FID, KID and precision/recall against each reference split,
    from one (resumable) Inception pass over the sample shards."""
    with timed(job, "sample_features_s"):
        stats, features = store_statistics(inception.extractor, store, shards, settings.fid_is, job.device)
    label = count_label(settings.generation.num_samples)
    metrics = dict(stats.scores(label)) if settings.inception_score else {}
    generated = None
    if settings.fid_is.needs_features and inception.references:
        generated = stored_features(features).to(job.device)
    for split, reference in inception.references.items():
        if settings.fid:
            metrics[f"fid_{label}_{split}"] = fid_against(stats, reference.stats)
        if generated is not None:
            with timed(job, "kid_pr_s"):
                metrics.update(
                    feature_scores(generated, reference.features, settings.fid_is, f"{label}_{split}")
                )
    return metrics


def nll_stage(job: EvalJob, settings: NLLSettings, out_dir: Path, progress: bool) -> dict[str, Any]:
    """The full variational bound on a split (resumable shards in ``out_dir/nll``): its summary."""
    fingerprint = generation_fingerprint(
        weights=job.digest,
        diffusion=describe_sampler(job.sampler).get("diffusion") or str(job.diffusion),
        split=settings.split,
        dataset=describe_datamodule(job.datamodule),
        num_images=settings.num_images,
        seed=settings.seed,
        clip=settings.clip_denoised,
        device_type=job.device.type,
    )
    dataset = split_dataset(job.datamodule, settings.split)
    with timed(job, "nll_s"):
        stats = dataset_nll_resumable(
            job.net,
            job.diffusion,
            dataset,
            out_dir / "nll",
            fingerprint=fingerprint,
            settings=settings,
            device=job.device,
            progress=progress,
        )
    return stats.summary()


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
        **_feature_protocol(settings.fid_is),
        **_conditional_protocol(job),
    }


def _conditional_protocol(job: EvalJob) -> dict[str, Any]:
    """The class-conditional protocol (labels, guidance scale), when the samples have labels."""
    if job.labels is None:
        return {}
    num_classes = int(job.net.num_classes)
    balanced = torch.equal(job.labels, torch.arange(job.labels.numel()) % num_classes)
    return {
        "class_conditional": {
            "num_classes": num_classes,
            "labels": "i % num_classes (class-balanced)" if balanced else "given",
            "guidance_scale": getattr(job.sampler, "guidance_scale", None),
            **describe_labels(job.labels),
        }
    }


def _feature_protocol(settings: FIDSettings) -> dict[str, Any]:
    """The KID / precision-recall settings, when those metrics are on (absent otherwise)."""
    out: dict[str, Any] = {}
    if settings.kid:
        kid = {
            "subsets": settings.kid_subsets,
            "subset_size": settings.kid_subset_size,
            "seed": settings.kid_seed,
        }
        out["kid"] = {**kid, "kernel": "polynomial, degree 3, gamma 1/dim, coef0 1", "estimator": "unbiased"}
    if settings.precision_recall:
        out["precision_recall"] = {"k": settings.pr_neighbours}
    return out


__all__ = [
    "EvalJob",
    "EvalSettings",
    "Inception",
    "describe_labels",
    "draw_dir",
    "draw_seeds",
    "fid_is_stage",
    "generate_stage",
    "inception_stage",
    "nll_stage",
    "protocol_record",
    "save_grid",
    "timed",
]
