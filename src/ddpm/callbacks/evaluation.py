"""In-training FID / Inception Score of EMA samples, every N steps, on 1 CPU, 1 GPU or DDP alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.evaluation.distributed import rank_and_world
from ddpm.evaluation.generation import generate
from ddpm.evaluation.inception import load_inception
from ddpm.evaluation.metrics import (
    DEFAULT_IS_SPLITS,
    TORCH_FIDELITY_SHUFFLE_SEED,
    InceptionStatistics,
    accumulate,
    count_label,
    fid,
    statistics_for,
)
from ddpm.evaluation.reference_stats import describe_datamodule, reference_statistics, split_dataset
from ddpm.sampling import AncestralSampler

SamplerFactory = Callable[[GaussianDiffusion], Any]


def sampler_tag(sampler: Any) -> str:
    """'' for the paper's sampler (ancestral, all 1000 steps); else e.g. 'ancestral100', 'ddim50'."""
    steps = getattr(sampler, "num_steps", None)
    if isinstance(sampler, AncestralSampler) and steps == 1000:
        return ""
    name = type(sampler).__name__.removesuffix("Sampler").lower()
    return f"{name}{steps}" if steps is not None else name


class FIDCallback(L.Callback):
    """Every ``every_n_steps`` optimizer steps, FID (vs each reference split) and IS of EMA samples.

    Every rank generates its share of ``num_samples`` (sample i from seed + i, the same images on
    any hardware), the float64 Inception statistics are all-reduced, and every rank computes and
    logs the same values (nothing runs on rank 0 only, so DDP cannot hang here). Names state the
    protocol: ``{prefix}fid_10k_train``, ``fid_10k_test``, ``is_10k_10splits``, ``is_10k_1split``,
    with the sampler in the name when it is not the paper's (``fid_10k_ddim50_train``). Reference
    statistics are computed once and cached in ``cache_dir``.

    Args:
        every_n_steps: period in optimizer steps (0: only at the end with ``at_end``).
        num_samples: samples per evaluation (the paper's number uses 50k; in-loop numbers are cheaper
            and biased upwards, hence the count in the name).
        batch_size: sampling batch size per rank.
        seed: base seed; the same samples' noise is reused at every evaluation.
        sampler: factory ``sampler(diffusion)`` (Hydra ``_partial_``); ancestral sampling by default.
        reference_splits: splits of the DataModule to compute FID against (``train``, ``test``).
        num_reference_images: images per reference split (None: all).
        inception_weights: path of ``pt_inception-2015-12-05-6726825d.pth`` (see
            :mod:`ddpm.evaluation.inception`).
        allow_download: download the Inception weights if they are not found.
        cache_dir: directory of cached reference statistics (None: not cached).
        inception_batch_size: Inception batch size.
        is_splits: IS split counts to log.
        at_end: also evaluate at the end of training.
        prefix: prefix of the logged names.
    """

    def __init__(
        self,
        every_n_steps: int = 10000,
        num_samples: int = 10000,
        batch_size: int = 250,
        seed: int = 0,
        sampler: SamplerFactory | None = None,
        reference_splits: Sequence[str] = ("train", "test"),
        num_reference_images: int | None = None,
        inception_weights: str | Path | None = None,
        allow_download: bool = True,
        cache_dir: str | Path | None = None,
        inception_batch_size: int = 200,
        is_splits: Sequence[int] = DEFAULT_IS_SPLITS,
        at_end: bool = False,
        prefix: str = "eval/",
    ) -> None:
        self.every_n_steps = int(every_n_steps)
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.sampler_factory = sampler or AncestralSampler
        self.reference_splits = tuple(reference_splits)
        self.num_reference_images = num_reference_images
        self.inception_weights = inception_weights
        self.allow_download = allow_download
        self.cache_dir = cache_dir
        self.inception_batch_size = int(inception_batch_size)
        self.is_splits = tuple(int(s) for s in is_splits)
        self.at_end = at_end
        self.prefix = prefix
        self.last_metrics: dict[str, float] = {}
        self._extractor: torch.nn.Module | None = None
        self._references: dict[str, InceptionStatistics] = {}
        self._last_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_end and trainer.global_step != self._last_step:
            self.evaluate(trainer, pl_module, log=False)

    def _reference(self, trainer: L.Trainer, split: str, device: torch.device) -> InceptionStatistics:
        if split not in self._references:
            datamodule = trainer.datamodule
            if datamodule is None:
                raise RuntimeError("FIDCallback needs the Trainer's datamodule for the reference statistics")
            stats, _, _ = reference_statistics(
                split_dataset(datamodule, split),
                describe_datamodule(datamodule),
                split,
                self._extractor,  # type: ignore[arg-type]
                self.cache_dir,
                num_images=self.num_reference_images,
                batch_size=self.inception_batch_size,
                device=device,
                is_splits=self.is_splits,
                shuffle_seed=TORCH_FIDELITY_SHUFFLE_SEED,
            )
            self._references[split] = stats
        return self._references[split]

    @torch.no_grad()
    def evaluate(
        self, trainer: L.Trainer, pl_module: L.LightningModule, log: bool = True
    ) -> dict[str, float]:
        """Sample, compute and log the metrics; every rank must call this (it does, from the hooks)."""
        self._last_step = trainer.global_step
        device = pl_module.device
        if self._extractor is None:
            self._extractor = load_inception(self.inception_weights, device, self.allow_download)
        net = pl_module.ema_net
        was_training = net.training
        net.eval()
        sampler = self.sampler_factory(pl_module.diffusion)
        shape = tuple(trainer.datamodule.image_shape)
        rank, world = rank_and_world()
        stats = statistics_for(
            self._extractor, self.num_samples, self.is_splits, TORCH_FIDELITY_SHUFFLE_SEED, device
        )
        try:
            batches = generate(
                net, sampler, shape, range(rank, self.num_samples, world), self.seed, self.batch_size, device
            )
            accumulate(stats, self._extractor, batches, self.inception_batch_size, device)
        finally:
            net.train(was_training)
        stats = stats.reduced()
        stats.check_complete()

        n = count_label(self.num_samples)
        tag = sampler_tag(sampler)
        middle = f"{n}_{tag}" if tag else n
        metrics: dict[str, float] = {}
        for split in self.reference_splits:
            metrics[f"{self.prefix}fid_{middle}_{split}"] = fid(
                stats.features, self._reference(trainer, split, device).features
            )
        for splits in stats.is_splits:
            mean, _ = stats.inception_score(splits)
            metrics[f"{self.prefix}is_{middle}_{splits}split{'s' if splits > 1 else ''}"] = mean
        self.last_metrics = metrics
        if log:
            # Identical on every rank (computed from all-reduced sums): no sync_dist needed.
            pl_module.log_dict(metrics, on_step=True, on_epoch=False, sync_dist=False)
        elif trainer.global_rank == 0:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
        return metrics
