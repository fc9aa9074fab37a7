"""A daemon thread that does one thing every few seconds until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Calls ``tick`` every ``period`` seconds (the first time at once if ``now``) in a
    daemon thread; a tick that raises is logged and the next one runs as planned."""

    def __init__(self, name: str, period: float, tick: Callable[[], None], *, now: bool) -> None:
        self._period = period
        self._tick = tick
        self._now = now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the running tick (if any) returns."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        if not self._now and self._stop.wait(self._period):
            return
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # a broken catalogue must not end the thread
                log.exception("%s", self._thread.name)
            self._stop.wait(self._period)
