"""Evaluation by the paper's protocol: FID / Inception Score / NLL (bits/dim), DDP-safe and resumable.

* :mod:`~ddpm.evaluation.inception`: the TF-compatible Inception (torch-fidelity), offline weights.
* :mod:`~ddpm.evaluation.metrics`: float64 FID / IS statistics that all-reduce across ranks.
* :mod:`~ddpm.evaluation.reference_stats`: cached statistics of dataset splits.
* :mod:`~ddpm.evaluation.generation`: per-sample-seeded, sharded, resumable sample generation.
* :mod:`~ddpm.evaluation.nll`: the full variational bound with per-timestep terms.
* :mod:`~ddpm.evaluation.pretrained` / :mod:`~ddpm.evaluation.checkpoint`: released and own weights.
"""

from ddpm.evaluation.checkpoint import load_lightning_checkpoint, load_model
from ddpm.evaluation.generation import ShardStore, generate, generate_shards
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
from ddpm.evaluation.nll import NLLStatistics, bound_terms, dataset_nll, dataset_nll_resumable
from ddpm.evaluation.pretrained import PRESETS, LoadedModel, load_diffusers_folder, load_pesser_state_dict
from ddpm.evaluation.reference_stats import ReferenceKey, reference_statistics

__all__ = [
    "INCEPTION_FILENAME",
    "PRESETS",
    "FeatureStatistics",
    "InceptionFeatureExtractor",
    "InceptionStatistics",
    "InceptionWeightsError",
    "LoadedModel",
    "NLLStatistics",
    "ReferenceKey",
    "ShardStore",
    "SplitISStatistics",
    "accumulate",
    "bound_terms",
    "dataset_nll",
    "dataset_nll_resumable",
    "fid",
    "frechet_distance",
    "generate",
    "generate_shards",
    "load_diffusers_folder",
    "load_inception",
    "load_lightning_checkpoint",
    "load_model",
    "load_pesser_state_dict",
    "make_random_inception_weights",
    "reference_statistics",
    "resolve_inception_weights",
    "statistics_for",
]
