"""Who is alive, and the unfinished work each one holds.

A *holder* is one running server process of a site (``ferry serve`` or one site of ``ferry
up``): a ``holders`` row that its heartbeat renews. Every row put into an unfinished status
(an image ``saving`` or deleted with data left, a volume ``creating``, a backup ``deleting``,
...) is stamped ``held_by`` the holder doing the work, and unstamped when it reaches a final
status. A row whose holder is gone (its row lapsed, or its process is dead) was cut off, and
the reconciler takes it over with a compare-and-set on ``held_by``, so two reconcilers never
act on one row. A *lease* is a named lock with an expiry (``reconcile:<site>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy.exc
from sqlalchemy import Table, delete, insert, select, update

from ferry.catalog.records import UNFINISHED, utcnow
from ferry.catalog.schema import (
    backups,
    holders,
    image_locations,
    images,
    leases,
    servers,
    tasks,
    volume_snapshots,
    volumes,
)

if TYPE_CHECKING:
    from ferry.catalog.catalog import Catalog

HELD_IMAGE = frozenset({"saving"})  # image statuses a process holds (importing: its task)
# Per record table, the statuses that are not final: some process is working on the row.
TRANSIENT: dict[str, frozenset[str]] = {
    "images": HELD_IMAGE | {"deleted"},  # deleted: until its data is gone from every store
    "volumes": frozenset({"creating", "deleting", "backing-up", "restoring-backup"}),
    "volume_snapshots": frozenset({"creating", "deleting"}),
    "servers": frozenset({"BUILD", "DELETING"}),
    "backups": frozenset({"creating", "deleting", "restoring"}),
}
_TABLES: dict[str, Table] = {
    t.name: t for t in (images, volumes, volume_snapshots, servers, backups)
}


@dataclass(frozen=True)
class Holder:
    """One live (or lately live) server process."""

    id: str
    site: str
    host: str
    pid: int
    started_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Held:
    """A row in an unfinished status and the holder working on it (None: nobody)."""

    table: str
    id: str
    status: str
    held_by: str | None


class Owners:
    """Holders, leases and held rows of one catalogue."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    # --- holders ---------------------------------------------------------------------------
    def renew(self, holder: Holder, lease: timedelta) -> None:
        """Register ``holder`` or extend its life by ``lease`` from now."""
        expires = utcnow() + lease
        with self._catalog._transaction(write=True) as conn:
            done = conn.execute(
                update(holders).where(holders.c.id == holder.id).values(expires_at=expires)
            )
            if done.rowcount == 0:
                row = {**holder.__dict__, "expires_at": expires}
                conn.execute(insert(holders).values(row))

    def drop(self, holder_id: str) -> None:
        with self._catalog._transaction(write=True) as conn:
            conn.execute(delete(holders).where(holders.c.id == holder_id))

    def holders(self) -> list[Holder]:
        with self._catalog._transaction(write=False) as conn:
            return [Holder(**row._mapping) for row in conn.execute(select(holders))]

    def forget_lapsed(self, grace: timedelta) -> None:
        """Drop holder rows lapsed for longer than ``grace`` (their work is reconciled)."""
        with self._catalog._transaction(write=True) as conn:
            conn.execute(delete(holders).where(holders.c.expires_at < utcnow() - grace))

    # --- leases ----------------------------------------------------------------------------
    def take_lease(self, name: str, holder: str, lease: timedelta) -> bool:
        """Hold the lease ``name`` until now + ``lease`` unless another holder has it."""
        now = utcnow()
        with self._catalog._transaction(write=True) as conn:
            row = conn.execute(select(leases).where(leases.c.name == name)).first()
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            insert(leases).values(name=name, holder=holder, expires_at=now + lease)
                        )
                except sqlalchemy.exc.IntegrityError:
                    return False  # another server inserted it first
                return True
            if row.holder != holder and row.expires_at > now:
                return False
            taken = conn.execute(
                update(leases)
                .where(
                    leases.c.name == name,
                    leases.c.holder == row.holder,
                    leases.c.expires_at == row.expires_at,
                )
                .values(holder=holder, expires_at=now + lease)
            )
            return bool(taken.rowcount == 1)

    def release_lease(self, name: str, holder: str) -> None:
        with self._catalog._transaction(write=True) as conn:
            conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))

    # --- held rows -------------------------------------------------------------------------
    def held(self, table: str) -> list[Held]:
        """Rows of ``table`` in an unfinished status (images: saving, or deleted with data)."""
        t = _TABLES[table]
        query = select(t.c.id, t.c.status, t.c.held_by).where(
            t.c.status.in_(sorted(TRANSIENT[table]))
        )
        if table == "images":
            with_data = select(image_locations.c.image_id).where(
                image_locations.c.image_id == images.c.id
            )
            query = query.where((images.c.status != "deleted") | with_data.exists())
        with self._catalog._transaction(write=False) as conn:
            return [Held(table, *row) for row in conn.execute(query)]

    def take_over(self, held: Held) -> bool:
        """Hold ``held``'s row for this catalogue's holder, if nobody else took it meanwhile."""
        t = _TABLES[held.table]
        was = t.c.held_by.is_(None) if held.held_by is None else t.c.held_by == held.held_by
        stmt = (
            update(t)
            .where(t.c.id == held.id, t.c.status == held.status, was)
            .values(held_by=self._catalog.holder, updated_at=utcnow())
        )
        with self._catalog._transaction(write=True) as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    def claim_image(self, image_id: str, status: str) -> bool:
        """Hold an image row nobody holds, still in ``status``, for this catalogue's holder
        (the sweep, while it removes the image's orphan data: no upload can start then)."""
        stmt = (
            update(images)
            .where(images.c.id == image_id, images.c.status == status, images.c.held_by.is_(None))
            .values(held_by=self._catalog.holder)
        )
        with self._catalog._transaction(write=True) as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    def release(self, table: str, record_id: str) -> None:
        """Hold a row no more (its work is left for another reconciler pass or site)."""
        t = _TABLES[table]
        with self._catalog._transaction(write=True) as conn:
            conn.execute(
                update(t)
                .where(t.c.id == record_id, t.c.held_by == self._catalog.holder)
                .values(held_by=None)
            )

    def deleted_locations(self, image_id: str) -> list[str]:
        """The catalogue keys of the stores a deleted image still has data in."""
        with self._catalog._transaction(write=False) as conn:
            return list(
                conn.execute(
                    select(image_locations.c.store)
                    .where(image_locations.c.image_id == image_id)
                    .distinct()  # an http store may hold several URLs of the image
                ).scalars()
            )

    def importing_without_task(self) -> list[str]:
        """Images ``importing`` that no unfinished task is importing (cut off mid-bookkeeping)."""
        busy = select(tasks.c.id).where(
            tasks.c.image_id == images.c.id, tasks.c.status.in_(list(UNFINISHED))
        )
        query = select(images.c.id).where(images.c.status == "importing", ~busy.exists())
        with self._catalog._transaction(write=False) as conn:
            return list(conn.execute(query).scalars())

    def unfinished_tasks(self) -> list[tuple[str, str | None]]:
        """(task id, lease owner) of every unfinished task."""
        query = select(tasks.c.id, tasks.c.lease_owner).where(tasks.c.status.in_(list(UNFINISHED)))
        with self._catalog._transaction(write=False) as conn:
            return [(task_id, owner) for task_id, owner in conn.execute(query)]

    def image_state(self, image_id: str) -> tuple[str | None, str | None, bool]:
        """(status, held_by, has an unfinished task) of an image; status None if it never was."""
        with self._catalog._transaction(write=False) as conn:
            row = conn.execute(
                select(images.c.status, images.c.held_by).where(images.c.id == image_id)
            ).first()
            busy = conn.execute(
                select(tasks.c.id).where(
                    tasks.c.image_id == image_id, tasks.c.status.in_(list(UNFINISHED))
                )
            ).first()
        if row is None:
            return None, None, busy is not None
        return row.status, row.held_by, busy is not None

    def exists(self, table: str, record_id: str) -> bool:
        t = _TABLES[table]
        with self._catalog._transaction(write=False) as conn:
            return conn.execute(select(t.c.id).where(t.c.id == record_id)).first() is not None

    def backup_bases(self) -> set[str]:
        """Every block image in the backups pool that a backup record names."""
        with self._catalog._transaction(write=False) as conn:
            return set(conn.execute(select(backups.c.base)).scalars())
