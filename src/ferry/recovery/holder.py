"""This process as a holder: a catalogue row its heartbeat renews, and who else is alive."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta

from ferry.catalog import Catalog
from ferry.catalog.owners import Holder
from ferry.catalog.records import utcnow
from ferry.errors import FerryError
from ferry.recovery.periodic import Periodic

log = logging.getLogger(__name__)


class Heartbeat:
    """Registers this process for one site and renews it every third of its lease.

    While started, ``catalog.holder`` names it, so every row the site's services put into
    an unfinished status is stamped with it.
    """

    def __init__(self, catalog: Catalog, site: str, lease: timedelta) -> None:
        self.catalog = catalog
        self.lease = lease
        host = socket.gethostname()
        self.holder = Holder(
            id=f"{site}@{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            site=site,
            host=host,
            pid=os.getpid(),
            started_at=utcnow(),
            expires_at=utcnow() + lease,
        )
        self._beat = Periodic(f"holder-{site}", lease.total_seconds() / 3, self._renew, now=False)

    @property
    def id(self) -> str:
        return self.holder.id

    def start(self) -> None:
        self.catalog.owners.renew(self.holder, self.lease)
        self.catalog.holder = self.id
        self._beat.start()

    def stop(self) -> None:
        """Stop renewing and drop the row: what this process still held is now reconciled."""
        self._beat.stop()
        try:
            self.catalog.owners.drop(self.id)
        except FerryError as exc:
            log.warning("could not drop holder %s: %s", self.id, exc)

    def _renew(self) -> None:
        self.catalog.owners.renew(self.holder, self.lease)


class Liveness:
    """Which holders are alive, as read at the start of a pass; a holder not seen then (a
    process that started since) is looked up again before it is called dead."""

    def __init__(self, read: Callable[[], Iterable[Holder]]) -> None:
        self._read = read
        self._alive: set[str] = set()
        self._seen: set[str] = set()
        self._load()

    def _load(self) -> None:
        now = utcnow()
        host = socket.gethostname()
        holders = list(self._read())
        self._seen = {h.id for h in holders}
        self._alive = {
            h.id for h in holders if h.expires_at > now and (h.host != host or running(h.pid))
        }

    def alive(self, holder_id: str | None) -> bool:
        """True while ``holder_id`` (or the holder a task worker's name starts with) lives."""
        if holder_id is None:
            return False
        holder = holder_id.split("/", 1)[0]
        if holder not in self._seen:
            self._load()
        return holder in self._alive


def running(pid: int) -> bool:
    """True while a process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
