"""This process as a holder: a catalogue row its heartbeat renews, and who else is alive."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterable
from datetime import timedelta

from ferry.catalog import Catalog
from ferry.catalog.owners import Holder
from ferry.catalog.records import utcnow
from ferry.errors import FerryError

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
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"holder-{site}", daemon=True)

    @property
    def id(self) -> str:
        return self.holder.id

    def start(self) -> None:
        self.catalog.owners.renew(self.holder, self.lease)
        self.catalog.holder = self.id
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and drop the row: what this process still held is now reconciled."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            self.catalog.owners.drop(self.id)
        except FerryError as exc:
            log.warning("could not drop holder %s: %s", self.id, exc)

    def _beat(self) -> None:
        while not self._stop.wait(self.lease.total_seconds() / 3):
            try:
                self.catalog.owners.renew(self.holder, self.lease)
            except FerryError as exc:  # the catalogue is down: try again next beat
                log.warning("holder %s could not renew: %s", self.id, exc)


class Liveness:
    """Which holders are alive, as read once: a pass judges every row by one snapshot."""

    def __init__(self, holders: Iterable[Holder]) -> None:
        now = utcnow()
        host = socket.gethostname()
        self._alive = {
            h.id for h in holders if h.expires_at > now and (h.host != host or running(h.pid))
        }

    def alive(self, holder_id: str | None) -> bool:
        """True while ``holder_id`` (or the holder a task worker's name starts with) lives."""
        if holder_id is None:
            return False
        return holder_id.split("/", 1)[0] in self._alive


def running(pid: int) -> bool:
    """True while a process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
