"""A printable summary of evaluation metrics beside the published numbers."""

from __future__ import annotations

import math


def spread(draws: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """(mean, std) over draws of every metric present in each draw (std: the sample std, ddof=1;
    0 for a single draw)."""
    names = [k for k in draws[0] if all(k in d for d in draws)]
    mean = {k: math.fsum(d[k] for d in draws) / len(draws) for k in names}
    if len(draws) < 2:
        return mean, dict.fromkeys(names, 0.0)
    var = {k: math.fsum((d[k] - mean[k]) ** 2 for d in draws) / (len(draws) - 1) for k in names}
    return mean, {k: math.sqrt(v) for k, v in var.items()}


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
