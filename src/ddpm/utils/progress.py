"""Progress bars for long loops: one small helper around tqdm."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def is_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (stderr by default, where tqdm writes) is a terminal. Elsewhere (a pipe, a log
    file, CI) a bar below another one would write cursor-up escapes (``\\x1b[A``) as text."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


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
    On a terminal it nests below the bars already shown (the training bar); elsewhere it stays on its own
    line, written with carriage returns only.
    """
    position = None if is_terminal() else 0
    return tqdm(
        items,
        desc=description,
        total=total,
        disable=not enabled,
        dynamic_ncols=True,
        leave=leave,
        position=position,
    )


__all__ = ["is_terminal", "progress_bar"]
