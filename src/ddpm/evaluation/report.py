"""Evaluation reports: atomic JSON files, the paper's expected numbers, and a printable summary."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

# REFERENCE.md sections 2 and 3 (paper numbers; validation figures of a correct Inception setup).
EXPECTED: dict[str, dict[str, float]] = {
    "cifar10": {
        "fid_50k_train": 3.17,
        "fid_50k_test": 5.27,  # the official weights' FID vs the test set
        "is_50k_10splits": 9.46,
        "is_50k_1split": 9.46,
        "nll_bpd_test": 3.75,
    },
    "lsun_church": {"fid_50k_train": 7.89},
    "lsun_bedroom": {"fid_50k_train": 4.90},
}
INCEPTION_CHECK: dict[str, dict[str, float]] = {
    # real-data figures with the official Inception weights (torch-fidelity / TF values)
    "cifar10": {
        "is_train_10splits": 11.2368,
        "is_test_10splits": 10.98,
        "fid_train_vs_test": 3.1508,
    },
}
CHECK_TOLERANCE = {"is_train_10splits": 0.02, "is_test_10splits": 0.25, "fid_train_vs_test": 0.05}


def dataset_family(name: str) -> str | None:
    """``cifar10`` / ``lsun_church`` / ... from a dataset name (``cifar10``, ``lsun-church_outdoor-256``)."""
    lowered = name.lower()
    if "cifar10" in lowered:
        return "cifar10"
    for category, family in (("church", "lsun_church"), ("bedroom", "lsun_bedroom"), ("cat", "lsun_cat")):
        if "lsun" in lowered and category in lowered:
            return family
    return None


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN written as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def summary_lines(metrics: dict[str, float], expected: dict[str, float] | None = None) -> list[str]:
    """``name  value  (paper: x)`` lines for the scalar metrics."""
    expected = expected or {}
    width = max((len(k) for k in metrics), default=0)
    lines = []
    for name, value in metrics.items():
        if not isinstance(value, int | float):
            continue
        line = f"{name:<{width}}  {value:10.4f}"
        if name in expected:
            line += f"   (paper / reference: {expected[name]})"
        lines.append(line)
    return lines
