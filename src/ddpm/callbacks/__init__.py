"""Training callbacks."""

from ddpm.callbacks.loss_curve import LossCurveCallback
from ddpm.callbacks.sample_grid import SampleGridCallback

__all__ = ["LossCurveCallback", "SampleGridCallback"]
