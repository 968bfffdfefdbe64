"""The metric maths, the feature network it reads images through, and the cache of reference statistics.

* :mod:`~ddpm.metrics.inception`: the TF-compatible Inception (torch-fidelity's port), offline weights.
* :mod:`~ddpm.metrics.vgg16`: torch-fidelity's VGG-16 (``fc2_relu``), precision/recall's other feature space.
* :mod:`~ddpm.metrics.weights_file`: where a feature network's weights file is found (offline first).
* :mod:`~ddpm.metrics.features`: the one loop that feeds images to a feature network, in chunks.
* :mod:`~ddpm.metrics.statistics`: float64 FID / IS statistics that all-reduce across ranks.
* :mod:`~ddpm.metrics.kid_pr`: KID and precision/recall from the features, split over ranks.
* :mod:`~ddpm.metrics.reference_cache`: the statistics (and features) of dataset splits, cached on disk.
* :mod:`~ddpm.metrics.names`: the one function that names every metric, with its protocol.

How ``ddpm-eval`` and the in-loop callbacks use them (samples, stages, report): :mod:`ddpm.evaluation`.
"""

from ddpm.metrics.features import accumulate, feature_chunks, gathered_features
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
from ddpm.metrics.reference_cache import (
    FeaturesKey,
    ReferenceFeatures,
    ReferenceKey,
    ReferenceSet,
    reference_features,
    reference_statistics,
)
from ddpm.metrics.statistics import (
    FeatureStatistics,
    InceptionStatistics,
    SplitISStatistics,
    fid,
    frechet_distance,
    statistics_for,
)
from ddpm.metrics.vgg16 import (
    VGG16_FILENAME,
    VGG16FeatureExtractor,
    VGG16WeightsError,
    load_vgg16,
    make_random_vgg16_weights,
    resolve_vgg16_weights,
)

__all__ = [
    "INCEPTION_FILENAME",
    "VGG16_FILENAME",
    "FeatureStatistics",
    "FeaturesKey",
    "InceptionFeatureExtractor",
    "InceptionStatistics",
    "InceptionWeightsError",
    "ReferenceFeatures",
    "ReferenceKey",
    "ReferenceSet",
    "SplitISStatistics",
    "VGG16FeatureExtractor",
    "VGG16WeightsError",
    "accumulate",
    "count_label",
    "feature_chunks",
    "fid",
    "frechet_distance",
    "gathered_features",
    "kid",
    "load_inception",
    "load_vgg16",
    "make_random_inception_weights",
    "make_random_vgg16_weights",
    "metric_name",
    "precision_recall",
    "reference_features",
    "reference_statistics",
    "resolve_inception_weights",
    "resolve_vgg16_weights",
    "sampler_tag",
    "statistics_for",
]
