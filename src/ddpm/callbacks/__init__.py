"""Training callbacks: sample grids (class grids of conditional models too), loss curve, in-loop FID/IS
and NLL, the run config in checkpoints, the whole-run progress bar, the divergence guard, the preemption
checkpoint, the checkpoint of a run's final step. The quickstart's digits score is
:class:`ddpm.digits_score.DigitsScoreCallback`."""

from ddpm.callbacks.checkpoint_at_end import ModelCheckpointAtEnd
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
    "ModelCheckpointAtEnd",
    "NLLCallback",
    "PreemptionCheckpoint",
    "RunConfigCallback",
    "RunProgressBar",
    "SampleGridCallback",
]
