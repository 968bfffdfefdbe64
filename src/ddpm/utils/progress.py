"""Progress bars for long loops (rich when attached to a terminal, tqdm otherwise)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(
    items: Iterable[T], enabled: bool = True, description: str = "", total: int | None = None
) -> Iterator[T]:
    """Wrap ``items`` in a tqdm bar with an ETA when ``enabled``; otherwise return them unchanged."""
    if not enabled:
        return iter(items)
    return iter(tqdm(items, desc=description, total=total, dynamic_ncols=True, leave=False))
