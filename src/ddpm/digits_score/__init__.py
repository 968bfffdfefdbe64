"""The digits score: the quickstart's sample quality, measured by a small classifier of the real digits.

FID and the Inception Score need an ImageNet network and thousands of images; the quickstart's 8x8 digits
need neither.

* :mod:`~ddpm.digits_score.classifier`: the classifier of the real digits (trained once, deterministically).
* :mod:`~ddpm.digits_score.score`: the digits score of a set of images and the class accuracy of
  class-conditional samples.
* :mod:`~ddpm.digits_score.callback`: the training callback that scores EMA samples
  (``experiment=quickstart``); the class accuracy of the class grids is the sample-grid callback's
  (:class:`~ddpm.callbacks.SampleGridCallback`, ``experiment=quickstart_conditional``).
"""

from ddpm.digits_score.callback import DigitsScoreCallback
from ddpm.digits_score.classifier import (
    DigitsClassifier,
    digit_splits,
    digits_classifier,
    predict,
    predict_proba,
    train_classifier,
)
from ddpm.digits_score.score import DigitsScore, class_accuracy, digits_score, held_out_digits

__all__ = [
    "DigitsClassifier",
    "DigitsScore",
    "DigitsScoreCallback",
    "class_accuracy",
    "digit_splits",
    "digits_classifier",
    "digits_score",
    "held_out_digits",
    "predict",
    "predict_proba",
    "train_classifier",
]
