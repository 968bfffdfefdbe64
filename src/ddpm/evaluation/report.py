"""``ddpm-eval``'s report: the metrics of one draw or their spread over several, the files it is written
to, and its printable summary beside the published numbers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ddpm.io.atomic import atomic_write_json
from ddpm.io.shards import ShardStore


def spread(draws: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """(mean, std) over draws of every metric present in each draw (std: the sample std, ddof=1;
    0 for a single draw)."""
    names = [k for k in draws[0] if all(k in d for d in draws)]
    mean = {k: math.fsum(d[k] for d in draws) / len(draws) for k in names}
    if len(draws) < 2:
        return mean, dict.fromkeys(names, 0.0)
    var = {k: math.fsum((d[k] - mean[k]) ** 2 for d in draws) / (len(draws) - 1) for k in names}
    return mean, {k: math.sqrt(v) for k, v in var.items()}


def draws_report(
    seeds: list[int], stores: list[ShardStore], per_draw: list[dict[str, float]]
) -> dict[str, Any]:
    """One draw: its metrics. Several: each metric's mean and std (ddof=1) over the draws, and each draw."""
    if len(seeds) == 1:
        return {"metrics": dict(per_draw[0])}
    mean, std = spread(per_draw)
    draws = [
        {"seed": seed, "fingerprint": store.fingerprint, "metrics": metrics}
        for seed, store, metrics in zip(seeds, stores, per_draw, strict=True)
    ]
    return {"metrics": mean, "metrics_std": std, "draws": draws}


def write_report(out_dir: Path, report: dict[str, Any], run_info: dict[str, Any]) -> None:
    """``report.json`` (metrics and protocol only, so a resumed run writes the same bytes) and
    ``run_info.json`` (what differs between runs: timings, cache hits); rank 0 calls this."""
    atomic_write_json(out_dir / "report.json", report)
    atomic_write_json(out_dir / "run_info.json", run_info)


def summary_lines(
    metrics: dict[str, float], expected: dict[str, float] | None = None, std: dict[str, float] | None = None
) -> list[str]:
    """``name  value [+- std over draws]  (paper / reference: x)`` lines for the scalar metrics."""
    expected, std = expected or {}, std or {}
    width = max((len(k) for k in metrics), default=0)
    lines = []
    for name, value in metrics.items():
        if not isinstance(value, int | float):
            continue
        line = f"{name:<{width}}  {value:10.4f}"
        if name in std:
            line += f" +- {std[name]:.4f}"
        if name in expected:
            line += f"   (paper / reference: {expected[name]})"
        lines.append(line)
    return lines


__all__ = ["draws_report", "spread", "summary_lines", "write_report"]
