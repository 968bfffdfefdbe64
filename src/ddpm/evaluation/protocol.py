"""``ddpm-eval``'s stages, one job each: generate the samples, draw the grid, FID/IS, NLL, the report.

Each stage takes the :class:`EvalJob` (the model and its data) and the small settings objects of
:class:`EvalSettings`; every stage is resumable or cheap to redo, so an interrupted evaluation rerun in
the same directory gives the same report.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.evaluation.distributed import barrier
from ddpm.evaluation.fid_is import FIDSettings, fid_against, reference_for, sample_statistics
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
from ddpm.evaluation.reference_stats import describe_datamodule, split_dataset
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
        return self.fid or self.inception_score


@dataclass
class EvalJob:
    """The model to evaluate, its sampler and dataset, on one device."""

    loaded: LoadedModel
    net: nn.Module
    diffusion: GaussianDiffusion
    sampler: Any
    datamodule: Any
    device: torch.device
    digest: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.digest = self.digest or module_digest(self.net)


@contextmanager
def timed(job: EvalJob, name: str) -> Iterator[None]:
    """Record the wall time of a block in ``job.timings[name]``."""
    start = time.perf_counter()
    yield
    job.timings[name] = time.perf_counter() - start


def generate_stage(
    job: EvalJob, settings: GenerationSettings, out_dir: Path, progress: bool
) -> tuple[ShardStore, list[int]]:
    """Generate (or resume) every sample in ``out_dir/samples``; returns the store and this rank's shards."""
    fingerprint = generation_fingerprint(
        weights=job.digest,
        sampler=describe_sampler(job.sampler),
        image_shape=list(job.loaded.image_shape),
        seed=settings.seed,
        num_samples=settings.num_samples,
        shard_size=settings.shard_size,
        device_type=job.device.type,
    )
    store = sample_store(out_dir / "samples", fingerprint, settings)
    with timed(job, "generation_s"):
        mine = generate_shards(
            job.net,
            job.sampler,
            store,
            image_shape=job.loaded.image_shape,
            settings=settings,
            device=job.device,
            progress=progress,
        )
        barrier()
    return store, mine


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


def fid_is_stage(
    job: EvalJob, settings: EvalSettings, store: ShardStore, shards: list[int], inception_path: Path
) -> dict[str, Any]:
    """IS of the samples and their FID against each reference split: metrics and what they were taken from."""
    extractor = InceptionFeatureExtractor(inception_path).to(job.device)
    with timed(job, "sample_features_s"):
        stats = sample_statistics(
            extractor,
            read_images(store, shards),
            settings.generation.num_samples,
            settings.fid_is,
            job.device,
        )
    label = count_label(settings.generation.num_samples)
    metrics = dict(stats.scores(label)) if settings.inception_score else {}
    references, hits = {}, {}
    for split in settings.fid_is.reference_splits if settings.fid else ():
        with timed(job, f"reference_{split}_s"):
            ref, key, hits[split] = reference_for(
                job.datamodule,
                split,
                extractor,
                settings.fid_is,
                device=job.device,
                progress=settings.progress,
            )
        metrics[f"fid_{label}_{split}"] = fid_against(stats, ref)
        references[split] = {"dataset": key.dataset, "num_images": key.num_images, "key": key.digest()}
    inception = {"sha256": extractor.weights_sha256, "official": extractor.official}
    return {"metrics": metrics, "references": references, "cache_hits": hits, "inception": inception}


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
    }


__all__ = [
    "EvalJob",
    "EvalSettings",
    "fid_is_stage",
    "generate_stage",
    "nll_stage",
    "protocol_record",
    "save_grid",
    "timed",
]
