"""The metric maths, the feature network it reads images through, and the cache of reference statistics.

* :mod:`~ddpm.metrics.inception`: the TF-compatible Inception (torch-fidelity's port), offline weights.
* :mod:`~ddpm.metrics.features`: the one loop that feeds images to a feature network, in chunks.
* :mod:`~ddpm.metrics.statistics`: float64 FID / IS statistics that all-reduce across ranks.
* :mod:`~ddpm.metrics.kid_pr`: KID and precision/recall from the features, split over ranks.
* :mod:`~ddpm.metrics.reference_cache`: the statistics (and features) of dataset splits, cached on disk.
* :mod:`~ddpm.metrics.names`: the one function that names every metric, with its protocol.

How ``ddpm-eval`` and the in-loop callbacks use them (samples, stages, report): :mod:`ddpm.evaluation`.
"""

from ddpm.metrics.features import accumulate, feature_chunks
from ddpm.metrics.inception import (
    INCEPTION_FILENAME,
    InceptionFeatureExtractor,
    InceptionWeightsError,
    load_inception,
    make_random_inception_weights,
    resolve_inception_weights,
)
from ddpm.metrics.kid_pr import kid, precision_recall
from ddpm.metrics.names import count_label, metric_name, sampler_tag
from ddpm.metrics.reference_cache import ReferenceKey, ReferenceSet, reference_statistics
from ddpm.metrics.statistics import (
    FeatureStatistics,
    InceptionStatistics,
    SplitISStatistics,
    fid,
    frechet_distance,
    statistics_for,
)

__all__ = [
    "INCEPTION_FILENAME",
    "FeatureStatistics",
    "InceptionFeatureExtractor",
    "InceptionStatistics",
    "InceptionWeightsError",
    "ReferenceKey",
    "ReferenceSet",
    "SplitISStatistics",
    "accumulate",
    "count_label",
    "feature_chunks",
    "fid",
    "frechet_distance",
    "kid",
    "load_inception",
    "make_random_inception_weights",
    "metric_name",
    "precision_recall",
    "reference_statistics",
    "resolve_inception_weights",
    "sampler_tag",
    "statistics_for",
]
