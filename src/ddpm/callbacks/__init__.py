"""Training callbacks: sample grids, loss curve, in-loop FID/IS and NLL, the run config in checkpoints,
the whole-run progress bar, the divergence guard and the preemption checkpoint."""

from ddpm.callbacks.divergence import DivergenceGuard
from ddpm.callbacks.evaluation import FIDCallback
from ddpm.callbacks.loss_curve import LossCurveCallback
from ddpm.callbacks.nll import NLLCallback
from ddpm.callbacks.preemption import PreemptionCheckpoint
from ddpm.callbacks.progress import RunProgressBar
from ddpm.callbacks.run_config import RunConfigCallback
from ddpm.callbacks.sample_grid import SampleGridCallback

__all__ = [
    "DivergenceGuard",
    "FIDCallback",
    "LossCurveCallback",
    "NLLCallback",
    "PreemptionCheckpoint",
    "RunConfigCallback",
    "RunProgressBar",
    "SampleGridCallback",
]
