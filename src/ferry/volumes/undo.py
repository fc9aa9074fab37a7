"""Take back, newest first, what an operation made before it failed part-way."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import ParamSpec

from ferry.errors import FerryError

log = logging.getLogger(__name__)
P = ParamSpec("P")


class Undo:
    """An undo stack: ``add`` an undo after each step that made something.

    If the ``with`` block raises (anything, as a ``finally`` would), the undos run newest
    first; a FerryError from one is logged and the next still runs; the block's error then
    propagates. If the block completes, the undos are dropped unrun.
    """

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Undo:
        return self

    def add(self, undo: Callable[P, object], /, *args: P.args, **kwargs: P.kwargs) -> None:
        def run() -> None:
            try:
                undo(*args, **kwargs)
            except FerryError as exc:
                log.warning("could not undo %s: %s", getattr(undo, "__qualname__", undo), exc)

        self._stack.callback(run)

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if t is None:
            self._stack.pop_all()
        else:
            self._stack.__exit__(t, e, tb)
