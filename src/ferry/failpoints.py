"""Crash points for the crash suite: the process kills itself where a test asks it to.

``FERRY_FAILPOINTS="upload.batch:3,volume.cloned"`` makes the process SIGKILL itself the 3rd
time it reaches ``upload.batch`` and the first time it reaches ``volume.cloned``. Unset (as in
production), ``reach`` is one dictionary lookup. The names are listed in docs/recovery.md.
"""

from __future__ import annotations

import os
import signal
import threading

_lock = threading.Lock()


def _parse(text: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, nth = item.partition(":")
        armed[name] = int(nth or 1)
    return armed


_armed = _parse(os.environ.get("FERRY_FAILPOINTS", ""))


def reach(name: str) -> None:
    """Die here (SIGKILL, no clean-up of any kind) if the crash suite armed ``name``."""
    if name not in _armed:
        return
    with _lock:
        _armed[name] -= 1
        if _armed[name] > 0:
            return
    os.kill(os.getpid(), signal.SIGKILL)
