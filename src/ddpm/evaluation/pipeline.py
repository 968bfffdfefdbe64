"""``ddpm-eval``'s pipeline: every draw's samples, the grid, FID / IS / KID / PR, the NLL, and the report.

:func:`evaluate_job` runs the stages of an :class:`~ddpm.evaluation.job.EvalJob` in order, each
resumable or cheap to redo, so that an interrupted evaluation rerun in the same directory gives the same
report:

1. :func:`generate_stage`, for every draw: its samples, in its own folder (draw 0 in the run directory
   itself, draw k in ``draws/seed{seeds[k]}``), each with its own fingerprint; ``samples.png`` shows the
   first draw;
2. :func:`networks_stage`: the feature networks (the Inception; VGG-16 for precision/recall with
   ``pr_features=vgg16``) and each reference split, loaded once for all draws, then :func:`fid_is_stage`
   for every draw (one resumable pass of each network over its shards);
3. :func:`nll_stage`: the bound on a split of the data;
4. the report (:mod:`ddpm.evaluation.report`): the draws' metrics, the protocol record, the published
   numbers, written to ``report.json`` and ``run_info.json``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ddpm.evaluation.datasets import describe_datamodule, split_dataset
from ddpm.evaluation.fid_is import (
    feature_scores,
    fid_against,
    inception_scores,
    reference_features_for,
    reference_for,
    store_features,
    store_statistics,
    stored_features,
)
from ddpm.evaluation.generation import GenerationSettings, generate_shards, read_images, sample_store
from ddpm.evaluation.job import EvalJob, EvalSettings, describe_cond, protocol_record
from ddpm.evaluation.nll import NLLSettings, dataset_nll_resumable
from ddpm.evaluation.paper_numbers import PAPER_NUM_SAMPLES, PAPER_VAR_TYPE, dataset_family, paper_numbers
from ddpm.evaluation.report import draws_report, write_report
from ddpm.io.shards import ShardStore
from ddpm.metrics.inception import InceptionFeatureExtractor, resolve_inception_weights
from ddpm.metrics.names import metric_name, protocol_tag
from ddpm.metrics.reference_cache import ReferenceFeatures, ReferenceSet
from ddpm.metrics.vgg16 import VGG16FeatureExtractor, resolve_vgg16_weights
from ddpm.utils.distributed import barrier, rank_and_world
from ddpm.utils.fingerprint import describe_sampler, fingerprint
from ddpm.utils.images import save_image_grid
from ddpm.weights.presets import get_preset


@contextmanager
def timed(job: EvalJob, name: str) -> Iterator[None]:
    """Add the wall time of a block to ``job.timings[name]``."""
    start = time.perf_counter()
    yield
    job.timings[name] = job.timings.get(name, 0.0) + time.perf_counter() - start


def draw_dir(out_dir: Path, draw: int, seed: int) -> Path:
    """Draw 0 in the run directory (as a one-draw evaluation), draw k in ``draws/seed{seed}``."""
    return out_dir if draw == 0 else out_dir / "draws" / f"seed{seed}"


def generate_stage(
    job: EvalJob, settings: GenerationSettings, out_dir: Path, progress: bool
) -> tuple[ShardStore, list[int]]:
    """Generate (or resume) every sample in ``out_dir/samples``; returns the store and this rank's shards."""
    key = fingerprint(
        weights=job.digest,
        sampler=describe_sampler(job.sampler),
        image_shape=list(job.loaded.image_shape),
        seed=settings.seed,
        num_samples=settings.num_samples,
        shard_size=settings.shard_size,
        device_type=job.device.type,
        **describe_cond(job.cond),
    )
    store = sample_store(out_dir / "samples", key, settings)
    with timed(job, "generation_s"):
        mine = generate_shards(
            job.sampling_net or job.net,
            job.sampler,
            store,
            image_shape=job.loaded.image_shape,
            settings=settings,
            device=job.device,
            progress=progress,
            cond=job.cond,
        )
        barrier()
    return store, mine


def generate_draws(job: EvalJob, settings: EvalSettings, out_dir: Path) -> list[tuple[ShardStore, list[int]]]:
    """Generate (or resume) the samples of every draw, each in its own folder: (store, this rank's shards)."""
    draws = []
    for k, seed in enumerate(settings.first_seeds):
        generation = dataclasses.replace(settings.generation, seed=seed)
        draws.append(generate_stage(job, generation, draw_dir(out_dir, k, seed), settings.progress))
    return draws


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


@dataclass(frozen=True)
class FeatureWeights:
    """The weights files of the feature networks the metrics need (None: not needed)."""

    inception: Path | None = None
    vgg16: Path | None = None

    def __bool__(self) -> bool:
        return self.inception is not None or self.vgg16 is not None


def feature_weights(settings: EvalSettings) -> FeatureWeights:
    """The Inception and VGG-16 weights files the metrics need, resolved before any sampling, so that a
    missing file stops the command at once, not after hours of sampling."""
    fid_is = settings.fid_is
    inception = (
        resolve_inception_weights(fid_is.inception_weights, fid_is.allow_download)
        if settings.needs_inception
        else None
    )
    vgg16 = resolve_vgg16_weights(fid_is.vgg16_weights, fid_is.allow_download) if fid_is.needs_vgg16 else None
    return FeatureWeights(inception, vgg16)


def _weights_record(extractor: Any) -> dict[str, Any]:
    return {"sha256": extractor.weights_sha256, "official": extractor.official}


@dataclass
class FeatureNetworks:
    """The feature networks (the Inception; VGG-16 for precision/recall in its space) and the reference
    splits (statistics and features of each), loaded once for all draws."""

    inception: Any | None
    references: dict[str, ReferenceSet] = field(default_factory=dict)
    vgg16: Any | None = None
    vgg16_references: dict[str, ReferenceFeatures] = field(default_factory=dict)

    def reference_features(self, split: str) -> dict[str, Tensor]:
        """A split's features by network (``inception``, ``vgg16``), those that were computed."""
        out = {}
        if split in self.references and self.references[split].features is not None:
            out["inception"] = self.references[split].features
        if split in self.vgg16_references:
            out["vgg16"] = self.vgg16_references[split].features
        return out

    def record(self) -> dict[str, Any]:
        """What the metrics were taken from, for the report (and the cache hits, for ``run_info.json``)."""
        refs: dict[str, dict[str, Any]] = {}
        for split, r in self.references.items():
            refs[split] = {"dataset": r.key.dataset, "num_images": r.key.num_images, "key": r.key.digest()}
        for split, v in self.vgg16_references.items():
            ref = refs.setdefault(split, {"dataset": v.key.dataset, "num_images": v.key.num_images})
            ref["vgg16_key"] = v.key.digest()
        hits = {split: r.hit for split, r in self.references.items()}
        hits.update({f"{split}_vgg16": v.hit for split, v in self.vgg16_references.items()})
        out: dict[str, Any] = {"references": refs, "cache_hits": hits}
        out["inception"] = _weights_record(self.inception) if self.inception is not None else None
        if self.vgg16 is not None:
            out["vgg16"] = _weights_record(self.vgg16)
        return out


def networks_stage(job: EvalJob, settings: EvalSettings, weights: FeatureWeights) -> FeatureNetworks:
    """The feature networks and, for each reference split, the Inception statistics (and features, for
    KID / PR in Inception space) and the VGG-16 features (PR in VGG-16 space), as the metrics need."""
    device, fid_is = job.device, settings.fid_is
    inception = InceptionFeatureExtractor(weights.inception).to(device) if weights.inception else None
    networks = FeatureNetworks(inception)
    if weights.vgg16 is not None:
        networks.vgg16 = VGG16FeatureExtractor(weights.vgg16).to(device)
    for split in fid_is.reference_splits if settings.needs_references else ():
        with timed(job, f"reference_{split}_s"):
            if inception is not None and (settings.fid or fid_is.needs_features):
                networks.references[split] = reference_for(
                    job.datamodule, split, inception, fid_is, device=device, progress=settings.progress
                )
            if networks.vgg16 is not None:
                networks.vgg16_references[split] = reference_features_for(
                    job.datamodule, split, networks.vgg16, fid_is, device=device, progress=settings.progress
                )
    return networks


def _sample_features(
    job: EvalJob, settings: EvalSettings, store: ShardStore, shards: list[int], networks: FeatureNetworks
) -> tuple[dict[str, float], Any, dict[str, Tensor]]:
    """One draw's passes: ``(IS scores, Inception statistics or None, features by network)``, each pass
    resumable over the sample shards."""
    num, tag = settings.generation.num_samples, job_protocol_tag(job)
    scores, stats, generated = {}, None, {}
    if networks.inception is not None:
        with timed(job, "sample_features_s"):
            stats, store_of = store_statistics(networks.inception, store, shards, settings.fid_is, job.device)
        scores = inception_scores(stats, num, tag=tag) if settings.inception_score else {}
        if settings.fid_is.needs_features:
            generated["inception"] = stored_features(store_of).to(job.device)
    if networks.vgg16 is not None:
        with timed(job, "vgg16_features_s"):
            features = store_features(networks.vgg16, store, shards, settings.fid_is, job.device)
        generated["vgg16"] = features.to(job.device)
    return scores, stats, generated


def fid_is_stage(
    job: EvalJob, settings: EvalSettings, store: ShardStore, shards: list[int], networks: FeatureNetworks
) -> dict[str, float]:
    """IS of one draw's samples and their FID, KID and precision/recall against each reference split,
    from one (resumable) pass of each feature network over the sample shards."""
    num, tag = settings.generation.num_samples, job_protocol_tag(job)
    metrics, stats, generated = _sample_features(job, settings, store, shards, networks)
    splits = dict.fromkeys([*networks.references, *networks.vgg16_references])
    for split in splits:
        if settings.fid and stats is not None:
            metrics[metric_name("fid", num, split, tag=tag)] = fid_against(
                stats, networks.references[split].stats
            )
        if generated:
            with timed(job, "kid_pr_s"):
                reference = networks.reference_features(split)
                metrics.update(
                    feature_scores(generated, reference, settings.fid_is, num=num, split=split, tag=tag)
                )
    return metrics


DIGITS_KEYS = ("score", "frechet", "confidence")  # the digits score's numbers in ddpm-eval's report


def digits_stage(job: EvalJob, store: ShardStore) -> dict[str, float]:
    """The digits score of one draw's samples (a model of the digits; no Inception needed), on rank 0:
    ``digits_score_{n}[_{tag}]``, ``digits_frechet_...`` and ``digits_confidence_...``."""
    from ddpm.digits_score.score import digits_score

    if rank_and_world()[0] != 0:
        return {}
    images = torch.cat([x for _, x in read_images(store, range(store.num_shards))]).float() / 127.5 - 1.0
    score, tag = digits_score(images), job_protocol_tag(job)
    num = score.num_images
    return {metric_name(f"digits_{key}", num, tag=tag): float(getattr(score, key)) for key in DIGITS_KEYS}


def held_out_baseline(num: int) -> dict[str, Any]:
    """The digits score of as many held-out digits (at most the 180 of the validation split): the
    baseline beside a model's (``report["reference"]``)."""
    from ddpm.digits_score.score import digits_score, held_out_digits

    return {"held_out_digits": digits_score(held_out_digits(num)).as_dict()}


def nll_stage(job: EvalJob, settings: NLLSettings, out_dir: Path, progress: bool) -> dict[str, Any]:
    """The full variational bound on a split (resumable shards in ``out_dir/nll``): its summary."""
    key = fingerprint(
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
            fingerprint=key,
            settings=settings,
            device=job.device,
            progress=progress,
        )
    return stats.summary()


def job_family(job: EvalJob) -> str | None:
    """The dataset family (``cifar10``, ``lsun_church``, ...) of the named preset, else of the data module."""
    preset = get_preset(job.pretrained)
    if preset is not None:
        return dataset_family(preset.data)
    return dataset_family(describe_datamodule(job.datamodule)) if job.datamodule is not None else None


def job_protocol_tag(job: EvalJob) -> str:
    """What in the job's sampling differs from the paper's protocol ('' where nothing does): the tag in the
    names of its metrics (:func:`~ddpm.metrics.names.protocol_tag`)."""
    return protocol_tag(
        job.sampler,
        raw_weights=job.loaded.weights == "raw",
        var_type=job.diffusion.var_type,
        paper_var_type=PAPER_VAR_TYPE.get(job_family(job) or ""),
        conditional=bool(job.cond),
    )


def expected_numbers(job: EvalJob, settings: EvalSettings) -> dict[str, float]:
    """The published numbers of the job's dataset, only under the paper's protocol (50k samples, EMA
    weights, every ancestral step, the paper's variance): other protocols' numbers are not comparable."""
    if job_protocol_tag(job) or settings.generation.num_samples != PAPER_NUM_SAMPLES:
        return {}
    return paper_numbers(job_family(job))


def evaluate_job(
    job: EvalJob, settings: EvalSettings, out_dir: Path, weights: FeatureWeights
) -> dict[str, Any]:
    """Generate (or resume) each draw's samples, compute the metrics and write the report (rank 0).

    :param weights: the feature networks' weights (:func:`feature_weights`); none: no FID/IS/KID/PR.
    :return: the report: ``metrics`` (over several draws: their mean, ``metrics_std`` and ``draws``),
        ``expected`` (the published numbers), ``protocol`` and ``nll`` (the bound's summary, or None).
    """
    seeds, rank = settings.first_seeds, rank_and_world()[0]
    draws = generate_draws(job, settings, out_dir)
    if rank == 0:
        save_grid(draws[0][0], settings.generation.grid_size, out_dir / "samples.png")
    networks = networks_stage(job, settings, weights) if weights else None
    per_draw = [
        {
            **(fid_is_stage(job, settings, st, mine, networks) if networks else {}),
            **(digits_stage(job, st) if settings.digits_score else {}),
        }
        for st, mine in draws
    ]
    report = draws_report(seeds, [st for st, _ in draws], per_draw)
    nll = nll_stage(job, settings.nll, out_dir, settings.progress) if settings.nll else None
    if nll is not None:
        report["metrics"][metric_name("nll_bpd", split=settings.nll.split)] = nll["bpd"]
    record = networks.record() if networks else {}
    protocol = protocol_record(job, settings, draws[0][0], record)
    if len(seeds) > 1:
        protocol["seeds"] = seeds
    report.update(expected=expected_numbers(job, settings), protocol=protocol, nll=nll)
    if settings.digits_score and rank == 0:
        report["reference"] = held_out_baseline(settings.generation.num_samples)
    if rank == 0:
        info = {"output_dir": str(out_dir), "world_size": rank_and_world()[1], "timings": job.timings}
        write_report(out_dir, report, {**info, "reference_cache_hits": record.get("cache_hits", {})})
    return report


__all__ = [
    "FeatureNetworks",
    "FeatureWeights",
    "digits_stage",
    "draw_dir",
    "evaluate_job",
    "expected_numbers",
    "feature_weights",
    "fid_is_stage",
    "generate_draws",
    "generate_stage",
    "held_out_baseline",
    "job_family",
    "job_protocol_tag",
    "networks_stage",
    "nll_stage",
    "save_grid",
    "timed",
]
