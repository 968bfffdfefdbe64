"""A printable summary of evaluation metrics beside the published numbers."""

from __future__ import annotations


def summary_lines(metrics: dict[str, float], expected: dict[str, float] | None = None) -> list[str]:
    """``name  value  (paper / reference: x)`` lines for the scalar metrics."""
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
