"""In-training FID / Inception Score (and KID, precision/recall) of EMA samples, every N steps, on 1 CPU,
1 GPU or DDP alike; a class-conditional model's samples follow ``ddpm-eval``'s class-conditional protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor

from ddpm.callbacks.periodic import PeriodicEMACallback
from ddpm.diffusion.denoiser import LABELS_KEY
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.evaluation.fid_is import (
    FIDSettings,
    feature_scores,
    fid_against,
    inception_scores,
    reference_features_for,
    reference_for,
    sample_statistics,
)
from ddpm.evaluation.generation import balanced_labels, generate
from ddpm.metrics.features import gathered_features
from ddpm.metrics.inception import InceptionWeightsError, load_inception, resolve_inception_weights
from ddpm.metrics.names import metric_name, protocol_tag
from ddpm.metrics.reference_cache import ReferenceSet
from ddpm.metrics.statistics import InceptionStatistics
from ddpm.metrics.vgg16 import VGG16WeightsError, load_vgg16, resolve_vgg16_weights
from ddpm.sampling import AncestralSampler
from ddpm.utils.distributed import rank_and_world
from ddpm.utils.progress import progress_bar

SamplerFactory = Callable[[GaussianDiffusion], Any]


Batches = Iterator[tuple[Tensor, Tensor]]


def counted(batches: Batches, total: int, enabled: bool, description: str) -> Batches:
    """``batches`` of ``(indices, images)`` unchanged, advancing a progress bar by the images of each."""
    with progress_bar(total=total, enabled=enabled, description=description) as bar:
        for indices, images in batches:
            bar.update(len(indices))
            yield indices, images


def kept(batches: Batches, into: list[tuple[Tensor, Tensor]]) -> Batches:
    """``batches`` unchanged, each also appended to ``into`` (for a second feature pass)."""
    for batch in batches:
        into.append(batch)
        yield batch


class FIDCallback(PeriodicEMACallback):
    """Every ``every_n_steps`` optimizer steps, FID (vs each reference split) and IS of EMA samples.

    Every rank generates its share of ``num_samples`` (sample i from seed + i, the same images on
    any hardware), the float64 Inception statistics are all-reduced, and every rank computes and
    logs the same values (nothing runs on rank 0 only, so DDP cannot hang here). Names state the
    protocol: ``{prefix}fid_10k_train``, ``fid_10k_test``, ``is_10k_10splits``, ``is_10k_1split``,
    with the sampler in the name when it is not the paper's (``fid_10k_ddim50_train``). Reference
    statistics are computed once and cached in ``metrics.cache_dir``. With ``metrics.kid`` /
    ``metrics.precision_recall`` the same Inception pass also gives ``kid_10k_ddim50_train`` and
    ``precision_inception_...`` / ``recall_inception_...`` (the samples' features are gathered once,
    then freed; the reference features are cached like the statistics); with
    ``metrics.pr_features=vgg16`` precision/recall are taken in VGG-16 space instead
    (``precision_vgg16_...``: a second pass over the samples, which are kept as uint8 meanwhile).

    A class-conditional EMA network (``num_classes`` > 0) is sampled as ``ddpm-eval``'s class-conditional
    protocol does, sample i with class ``i % num_classes``, and the names say so
    (``fid_10k_ddim100_cond_train``).

    Args:
        every_n_steps: period in optimizer steps (0: only at the end with ``at_end``).
        num_samples: samples per evaluation (the paper's number uses 50k; in-loop numbers are cheaper
            and biased upwards, hence the count in the name).
        batch_size: sampling batch size per rank.
        seed: base seed; the same samples' noise is reused at every evaluation.
        sampler: factory ``sampler(diffusion)`` (Hydra ``_partial_``); ancestral sampling by default.
        metrics: the FID/IS settings (:class:`~ddpm.evaluation.fid_is.FIDSettings` or a mapping of its
            fields: the ``metrics/fid_is`` config shared with ``ddpm-eval``).
        at_end: also evaluate at the end of training.
        prefix: prefix of the logged names.
        show_progress: a progress bar (rank 0's share of the samples, with its ETA) while sampling.
    """

    def __init__(
        self,
        every_n_steps: int = 10000,
        num_samples: int = 10000,
        batch_size: int = 250,
        seed: int = 0,
        sampler: SamplerFactory | None = None,
        metrics: FIDSettings | Mapping[str, Any] | None = None,
        at_end: bool = False,
        prefix: str = "eval/",
        show_progress: bool = True,
    ) -> None:
        super().__init__(every_n_steps, at_end)
        self.show_progress = show_progress
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.sampler_factory = sampler or AncestralSampler
        self.metrics = metrics if isinstance(metrics, FIDSettings) else FIDSettings.from_mapping(metrics)
        self.prefix = prefix
        self.last_metrics: dict[str, float] = {}
        self._extractor: torch.nn.Module | None = None
        self._vgg16: torch.nn.Module | None = None
        self._references: dict[str, ReferenceSet] = {}
        self._vgg16_references: dict[str, Tensor] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Find (or download) the Inception (and VGG-16) weights when training starts, not at the first
        evaluation."""
        if stage != "fit":
            return
        try:
            resolve_inception_weights(self.metrics.inception_weights, self.metrics.allow_download)
            if self.metrics.needs_vgg16:
                resolve_vgg16_weights(self.metrics.vgg16_weights, self.metrics.allow_download)
        except (InceptionWeightsError, VGG16WeightsError) as exc:
            raise type(exc)(f"{exc}; or train without the in-loop FID: callbacks=default") from None

    def _reference(self, trainer: L.Trainer, split: str, device: torch.device) -> ReferenceSet:
        if split not in self._references:
            if trainer.datamodule is None:
                raise RuntimeError("FIDCallback needs the Trainer's datamodule for the reference statistics")
            self._references[split] = reference_for(
                trainer.datamodule, split, self._extractor, self.metrics, device=device
            )
        return self._references[split]

    def _reference_features(self, trainer: L.Trainer, split: str, device: torch.device) -> dict[str, Tensor]:
        """A split's features by network, as :func:`~ddpm.evaluation.fid_is.feature_scores` takes them."""
        out = {}
        if self.metrics.needs_features:
            out["inception"] = self._reference(trainer, split, device).features
        if self.metrics.needs_vgg16:
            if split not in self._vgg16_references:
                self._vgg16_references[split] = reference_features_for(
                    trainer.datamodule, split, self._vgg16, self.metrics, device=device
                ).features
            out["vgg16"] = self._vgg16_references[split]
        return out

    @staticmethod
    def labels(pl_module: L.LightningModule, num_samples: int) -> Tensor | None:
        """The class labels of samples ``0..N-1``: ``i % num_classes`` for a class-conditional network
        (``ddpm-eval``'s class-conditional protocol), None for an unconditional one."""
        num_classes = int(getattr(pl_module.ema_net, "num_classes", 0) or 0)
        return balanced_labels(num_samples, num_classes) if num_classes > 0 else None

    def _load_networks(self, device: torch.device) -> None:
        settings = self.metrics
        if self._extractor is None:
            self._extractor = load_inception(settings.inception_weights, device, settings.allow_download)
        if settings.needs_vgg16 and self._vgg16 is None:
            self._vgg16 = load_vgg16(settings.vgg16_weights, device, settings.allow_download)

    def _sample_features(
        self, trainer: L.Trainer, pl_module: L.LightningModule, sampler: Any
    ) -> tuple[InceptionStatistics, dict[str, Tensor]]:
        """The samples' Inception statistics and their features by network (those the metrics need)."""
        device = pl_module.device
        self._load_networks(device)
        rank, world = rank_and_world()
        indices = range(rank, self.num_samples, world)
        labels = self.labels(pl_module, self.num_samples)
        batches = generate(
            pl_module.ema_net,
            sampler,
            tuple(trainer.datamodule.image_shape),
            indices,
            seed=self.seed,
            batch_size=self.batch_size,
            device=device,
            cond=None if labels is None else {LABELS_KEY: labels[list(indices)]},
        )
        label = f"FID samples (step {trainer.global_step})"
        batches = counted(batches, len(indices), self.show_progress and rank == 0, label)
        images: list[tuple[Tensor, Tensor]] = []
        batches = kept(batches, images) if self.metrics.needs_vgg16 else batches
        stats, features = sample_statistics(self._extractor, batches, self.num_samples, self.metrics, device)
        generated = {} if features is None else {"inception": features}
        if self.metrics.needs_vgg16:
            batch = self.metrics.inception_batch(device)
            generated["vgg16"] = gathered_features(
                self._vgg16, images, self.num_samples, batch_size=batch, device=device
            )
        return stats, generated

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool) -> dict[str, float]:
        sampler = self.sampler_factory(pl_module.diffusion)
        stats, generated = self._sample_features(trainer, pl_module, sampler)
        conditional = self.labels(pl_module, 1) is not None
        num = self.num_samples
        tag = protocol_tag(sampler, var_type=pl_module.diffusion.var_type, conditional=conditional)
        scores: dict[str, float] = {}
        for split in self.metrics.reference_splits:
            reference = self._reference(trainer, split, pl_module.device)
            scores[metric_name("fid", num, split, tag=tag)] = fid_against(stats, reference.stats)
            if generated:
                real = self._reference_features(trainer, split, pl_module.device)
                scores.update(feature_scores(generated, real, self.metrics, num=num, split=split, tag=tag))
        del generated
        scores.update(inception_scores(stats, num, tag=tag, std=False))
        metrics = {f"{self.prefix}{k}": v for k, v in scores.items() if not k.endswith("_std")}
        self.last_metrics = metrics
        self.log_metrics(trainer, pl_module, metrics, final)
        return metrics

    def evaluate(
        self, trainer: L.Trainer, pl_module: L.LightningModule, log: bool = True
    ) -> dict[str, float]:
        """Sample, compute and log the metrics now; every rank must call this."""
        return self._trigger(trainer, pl_module, final=not log)
