"""Evaluation by the paper's protocol: FID / Inception Score / NLL (bits/dim), DDP-safe and resumable.

* :mod:`~ddpm.evaluation.inception`: the TF-compatible Inception (torch-fidelity), offline weights.
* :mod:`~ddpm.evaluation.metrics`: float64 FID / IS statistics that all-reduce across ranks.
* :mod:`~ddpm.evaluation.feature_metrics`: KID and precision/recall from the features, split over ranks.
* :mod:`~ddpm.evaluation.reference_stats`: cached statistics of dataset splits.
* :mod:`~ddpm.evaluation.fid_is`: the FID/IS protocol's settings and stages (shared with the callback).
* :mod:`~ddpm.evaluation.generation`: per-sample-seeded, sharded, resumable sample generation.
* :mod:`~ddpm.evaluation.nll`: the full variational bound over a dataset, resumable.
* :mod:`~ddpm.evaluation.protocol`: ``ddpm-eval``'s stages; :mod:`~ddpm.evaluation.paper_numbers`: the
  published numbers; :mod:`~ddpm.evaluation.inception_check`: the real-data check of an Inception setup.
"""

from ddpm.evaluation.feature_metrics import kid, precision_recall
from ddpm.evaluation.fid_is import FIDSettings
from ddpm.evaluation.generation import GenerationSettings, generate, generate_shards, sample_store
from ddpm.evaluation.inception import (
    INCEPTION_FILENAME,
    InceptionFeatureExtractor,
    InceptionWeightsError,
    load_inception,
    make_random_inception_weights,
    resolve_inception_weights,
)
from ddpm.evaluation.metrics import (
    FeatureStatistics,
    InceptionStatistics,
    SplitISStatistics,
    accumulate,
    fid,
    frechet_distance,
    statistics_for,
)
from ddpm.evaluation.nll import NLLSettings, NLLStatistics, dataset_nll, dataset_nll_resumable
from ddpm.evaluation.paper_numbers import PAPER
from ddpm.evaluation.reference_stats import ReferenceKey, reference_statistics

__all__ = [
    "INCEPTION_FILENAME",
    "PAPER",
    "FIDSettings",
    "FeatureStatistics",
    "GenerationSettings",
    "InceptionFeatureExtractor",
    "InceptionStatistics",
    "InceptionWeightsError",
    "NLLSettings",
    "NLLStatistics",
    "ReferenceKey",
    "SplitISStatistics",
    "accumulate",
    "dataset_nll",
    "dataset_nll_resumable",
    "fid",
    "frechet_distance",
    "generate",
    "generate_shards",
    "kid",
    "load_inception",
    "make_random_inception_weights",
    "precision_recall",
    "reference_statistics",
    "resolve_inception_weights",
    "sample_store",
    "statistics_for",
]
