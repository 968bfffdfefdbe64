"""Check an Inception setup on real data: IS of CIFAR-10's train and test sets and their FID.

A correct setup (the TF-compatible Inception, uint8 images, TF1 bilinear resize, float64 statistics)
reproduces :data:`~ddpm.evaluation.paper_numbers.INCEPTION_CHECK`; otherwise no FID/IS it computes is
comparable with the paper's.
"""

from __future__ import annotations

from typing import Any

import torch

from ddpm.evaluation.fid_is import FIDSettings, fid_against, inception_scores, reference_for
from ddpm.evaluation.paper_numbers import CHECK_TOLERANCE, INCEPTION_CHECK, dataset_family
from ddpm.metrics.inception import load_inception
from ddpm.metrics.names import metric_name


def check_inception(
    datamodule: Any, settings: FIDSettings, device: torch.device, progress: bool = False
) -> dict[str, Any]:
    """Real-data IS (train, test) and train-vs-test FID, with the verdict against the known values."""
    extractor = load_inception(settings.inception_weights, device, settings.allow_download)
    train, train_key, _ = reference_for(
        datamodule, "train", extractor, settings, device=device, progress=progress
    )
    test, _, _ = reference_for(datamodule, "test", extractor, settings, device=device, progress=progress)
    # IS of real data (the means) for every split count that fits the number of images
    metrics = inception_scores(train, None, "train", std=False)
    metrics.update(inception_scores(test, None, "test", std=False))
    metrics[metric_name("fid", split="train", detail="vs_test")] = fid_against(train, test)
    family = dataset_family(train_key.dataset)
    expected = INCEPTION_CHECK.get(family or "", {})
    full = family == "cifar10" and train.num == 50000 and test.num == 10000
    verdict = {}
    if full and extractor.official:
        verdict = {k: abs(metrics[k] - v) <= CHECK_TOLERANCE[k] for k, v in expected.items() if k in metrics}
    return {
        "mode": "check_inception",
        "dataset": train_key.dataset,
        "num_images": {"train": train.num, "test": test.num},
        "inception": {"sha256": extractor.weights_sha256, "official": extractor.official},
        "metrics": metrics,
        "expected": expected,
        "passed": verdict or None,
        "full": full,
    }


def verdict_line(report: dict[str, Any]) -> str:
    """What the check means, in one line."""
    if not report["inception"]["official"]:
        return "WARNING: these are not the official Inception weights; the values cannot match."
    if not report.pop("full", False):
        return "(the reference values hold for the full CIFAR-10 train (50k) and test (10k) sets)"
    if not all(report["passed"].values()):
        return "MISMATCH: your Inception setup does not reproduce the reference values; do not trust FID/IS."
    return "OK: the Inception setup reproduces the reference values."


__all__ = ["check_inception", "verdict_line"]
