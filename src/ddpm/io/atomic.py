"""The one atomic writer: write a temporary file beside the target, fsync it, rename it over the target.

A reader (or a resumed run) therefore sees either the old file or the complete new one, never a
half-written file, whatever kills the process.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temporary binary file, then atomically rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_save_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save(obj)`` atomically."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def _json_safe(obj: Any) -> Any:
    """NaN and infinities become null (JSON has no such numbers); tuples become lists."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN written as null)."""
    text = json.dumps(_json_safe(obj), indent=2) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


__all__ = ["atomic_save_torch", "atomic_write", "atomic_write_json"]
