"""Progress bars for long loops: one small helper around tqdm."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(
    items: Iterable[T] | None = None,
    enabled: bool = True,
    description: str = "",
    total: int | None = None,
    *,
    leave: bool = False,
) -> tqdm:
    """A tqdm bar with an ETA over ``items`` (or, with ``items=None``, advanced by ``bar.update(n)``).

    Iterating it yields ``items`` unchanged; when not ``enabled`` the bar is silent and costs nothing.
    """
    return tqdm(items, desc=description, total=total, disable=not enabled, dynamic_ncols=True, leave=leave)


__all__ = ["progress_bar"]
