"""``ddpm-eval``'s pipeline, by the paper's protocol: samples, FID / IS / KID / PR, NLL (bits/dim), report.

* :mod:`~ddpm.evaluation.generation`: per-sample-seeded, sharded, resumable sample generation.
* :mod:`~ddpm.evaluation.fid_is`: the FID/IS settings and stages (shared with the in-loop callback).
* :mod:`~ddpm.evaluation.nll`: the full variational bound over a dataset, resumable.
* :mod:`~ddpm.evaluation.datasets`: the split of a data module that an evaluation reads, and its name.
* :mod:`~ddpm.evaluation.job`: what an evaluation computes and the record of what its numbers
  depend on; :mod:`~ddpm.evaluation.pipeline`: its stages, run in order, resumable.
* :mod:`~ddpm.evaluation.report`: the report over draws and its summary;
  :mod:`~ddpm.evaluation.paper_numbers`: the published numbers;
  :mod:`~ddpm.evaluation.inception_check`: the real-data check of an Inception setup.

The metric maths, the Inception and the reference-statistics cache: :mod:`ddpm.metrics`.
"""

from ddpm.evaluation.fid_is import FIDSettings
from ddpm.evaluation.generation import GenerationSettings, generate, generate_shards, sample_store
from ddpm.evaluation.job import EvalJob, EvalSettings
from ddpm.evaluation.nll import NLLSettings, NLLStatistics, dataset_nll, dataset_nll_resumable
from ddpm.evaluation.paper_numbers import PAPER
from ddpm.evaluation.pipeline import evaluate_job

__all__ = [
    "PAPER",
    "EvalJob",
    "EvalSettings",
    "FIDSettings",
    "GenerationSettings",
    "NLLSettings",
    "NLLStatistics",
    "dataset_nll",
    "dataset_nll_resumable",
    "evaluate_job",
    "generate",
    "generate_shards",
    "sample_store",
]
