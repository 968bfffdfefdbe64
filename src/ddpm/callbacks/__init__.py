"""Training callbacks: sample grids, loss curve, in-loop FID/IS and NLL, and the run config in checkpoints."""

from ddpm.callbacks.evaluation import FIDCallback
from ddpm.callbacks.loss_curve import LossCurveCallback
from ddpm.callbacks.nll import NLLCallback
from ddpm.callbacks.run_config import RunConfigCallback
from ddpm.callbacks.sample_grid import SampleGridCallback

__all__ = ["FIDCallback", "LossCurveCallback", "NLLCallback", "RunConfigCallback", "SampleGridCallback"]
