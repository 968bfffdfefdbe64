"""Training callbacks."""

from ddpm.callbacks.evaluation import FIDCallback
from ddpm.callbacks.loss_curve import LossCurveCallback
from ddpm.callbacks.nll import NLLCallback
from ddpm.callbacks.sample_grid import SampleGridCallback

__all__ = ["FIDCallback", "LossCurveCallback", "NLLCallback", "SampleGridCallback"]
