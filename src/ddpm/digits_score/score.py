"""What the digits classifier measures of a set of images: the digits score, and the class accuracy.

* ``score``: the Inception-Score analogue exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016, eq. in
  Sec. 4) with p(y) the mean of p(y|x) over the N images: 1 (junk or one class) to 10 (confident,
  balanced);
* ``confidence``: E_x max_y p(y|x); ``class_balance``: exp(H(p(y))) / 10, 1 for balanced classes;
* ``frechet``: the Fréchet distance (Heusel et al. 2017, FID's formula) between Gaussians fitted to the
  classifier's penultimate features of the images and of the training digits (the 1,617 of the digits data
  module's training split, which the models and the classifier learn from: FID against the training set,
  as the paper's);
* :func:`class_accuracy` (class-conditional models): how often a sample is classified as the digit it was
  asked for.

The baseline beside a model's score is the held-out digits' (:func:`held_out_digits`: the 180 of the
validation split, seen by neither the classifier nor the reference nor the model) at the same number of
images: a subset of the reference itself would sit far closer to it (Fréchet 0.86 at 1,000 images, where
two disjoint halves of the digits are 7.2 apart) and make the gap to the model look larger than it is.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from ddpm.digits_score.classifier import FEATURE_DIM, NUM_CLASSES, classify, digit_splits, predict
from ddpm.metrics.statistics import FeatureStatistics, fid


@dataclass(frozen=True)
class DigitsScore:
    """The digits score of N images (see the module docstring)."""

    num_images: int
    score: float
    confidence: float
    class_balance: float
    frechet: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def classifier_score(probs: Tensor) -> tuple[float, float, float]:
    """(exp(E KL(p(y|x) || p(y))), E max p(y|x), exp(H(p(y))) / 10) of probabilities [N, 10], float64."""
    p = probs.to(torch.float64)
    marginal = p.mean(dim=0)
    kl = (p * (torch.log(p.clamp_min(1e-30)) - torch.log(marginal.clamp_min(1e-30)))).sum(dim=1)
    entropy = -(marginal * torch.log(marginal.clamp_min(1e-30))).sum()
    confidence = p.max(dim=1).values.mean().item()
    return math.exp(kl.mean().item()), confidence, math.exp(entropy.item()) / NUM_CLASSES


def feature_statistics(features: Tensor) -> FeatureStatistics:
    """Float64 mean/covariance sums of feature rows (the Fréchet distance's Gaussian)."""
    stats = FeatureStatistics(dim=FEATURE_DIM)
    stats.update(features)
    return stats


@functools.lru_cache(maxsize=1)
def reference_statistics() -> FeatureStatistics:
    """Feature statistics of the training digits: the Fréchet reference of :func:`digits_score`."""
    return feature_statistics(classify(digit_splits()[0])[0])


def digits_score(images: Tensor) -> DigitsScore:
    """The digits score of [N, 1, S, S] images in [-1, 1] (N >= 2), compared at 16x16 (see
    :mod:`~ddpm.digits_score.classifier`)."""
    if images.shape[0] < 2:
        raise ValueError("the digits score needs at least 2 images")
    features, probs = classify(images)
    score, confidence, balance = classifier_score(probs)
    frechet = fid(feature_statistics(features), reference_statistics())
    return DigitsScore(images.shape[0], score, confidence, balance, frechet)


def class_accuracy(images: Tensor, labels: Tensor) -> float:
    """The share of [N, 1, S, S] digit images that the digits classifier reads as their label [N]."""
    return float((predict(images) == labels.cpu()).float().mean())


def held_out_digits(num: int | None = None) -> Tensor:
    """The first ``num`` (all: None) of the 180 held-out digits (the validation split), [-1, 1] at 16x16:
    the baseline of a model's digits score, at the same number of images."""
    held_out = digit_splits()[2]
    return held_out if num is None else held_out[: int(num)]


__all__ = [
    "DigitsScore",
    "class_accuracy",
    "classifier_score",
    "digits_score",
    "feature_statistics",
    "held_out_digits",
    "reference_statistics",
]
