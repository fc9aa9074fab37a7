"""Volumes, volume snapshots, servers and backups: one small record table each.

Each is a frozen dataclass whose fields are its table's columns, kept by a ``Records`` of that
type. A status change is a compare-and-set like an image's: ``change(id, expect=(...))``
updates the row only while its status is one of those, so of two racing deletes one wins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import sqlalchemy.exc
from sqlalchemy import Table, delete, insert, select, update

from ferry.catalog.owners import TRANSIENT
from ferry.catalog.records import utcnow
from ferry.catalog.schema import backups, servers, volume_snapshots, volumes
from ferry.config import NOAUTH_PROJECT
from ferry.errors import AlreadyExists, Conflict, NotFound

if TYPE_CHECKING:
    from ferry.catalog.catalog import Catalog


R = TypeVar("R")

VolumeStatus = Literal[
    "creating", "available", "in-use", "backing-up", "restoring-backup", "deleting", "error"
]
SnapshotStatus = Literal["creating", "available", "deleting", "error"]
ServerStatus = Literal["BUILD", "ACTIVE", "SHUTOFF", "ERROR", "DELETING"]
BackupStatus = Literal["creating", "available", "deleting", "restoring", "error"]


def _now() -> datetime:
    return utcnow()


@dataclass(frozen=True)
class VolumeRecord:
    id: str
    name: str | None
    description: str | None
    status: VolumeStatus
    size: int  # GiB
    availability_zone: str
    bootable: bool = False
    source: dict[str, Any] = field(default_factory=dict)
    volume_image_metadata: dict[str, Any] | None = None
    attached_to: str | None = None
    project_id: str = NOAUTH_PROJECT
    user_id: str | None = None
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)


@dataclass(frozen=True)
class SnapshotRecord:
    id: str
    volume_id: str
    name: str | None
    description: str | None
    status: SnapshotStatus
    size: int
    project_id: str = NOAUTH_PROJECT
    user_id: str | None = None
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)


@dataclass(frozen=True)
class ServerRecord:
    id: str
    name: str | None
    status: ServerStatus
    availability_zone: str
    image_id: str | None = None
    volume_id: str | None = None
    fault: str | None = None
    image_source: dict[str, Any] | None = None
    project_id: str = NOAUTH_PROJECT
    user_id: str | None = None
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)


@dataclass(frozen=True)
class BackupRecord:
    id: str
    volume_id: str
    name: str | None
    status: BackupStatus
    size: int
    availability_zone: str
    base: str
    is_incremental: bool
    source_snap: str
    moved: int = 0
    project_id: str = NOAUTH_PROJECT
    user_id: str | None = None
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)


class Records(Generic[R]):
    """The rows of one table as records of type ``R``; ``noun`` names them in errors."""

    def __init__(self, catalog: Catalog, table: Table, kind: type[R], noun: str) -> None:
        self._catalog = catalog
        self._table = table
        self._kind = kind
        self.noun = noun
        self._fields = {f.name for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
        self._transient = TRANSIENT[table.name]

    def _held_by(self, status: object) -> str | None:
        """The holder a row in ``status`` is stamped with: ours while unfinished, else none."""
        return self._catalog.holder if status in self._transient else None

    def _record(self, row: Any) -> R:
        return self._kind(**{k: v for k, v in row._mapping.items() if k in self._fields})

    def add(self, record: R) -> R:
        row = dataclasses.asdict(record)  # type: ignore[call-overload]
        row["held_by"] = self._held_by(row["status"])
        with self._catalog._transaction(write=True) as conn:
            try:
                conn.execute(insert(self._table).values(row))
            except sqlalchemy.exc.IntegrityError as exc:
                raise AlreadyExists(f"{self.noun} {row['id']} already exists") from exc
        return record

    def get(self, record_id: str) -> R:
        with self._catalog._transaction(write=False) as conn:
            row = conn.execute(select(self._table).where(self._table.c.id == record_id)).first()
        if row is None:
            raise NotFound(f"{self.noun} {record_id} could not be found.")
        return self._record(row)

    def list(self, **where: object) -> list[R]:
        """Newest first, the rows whose columns equal ``where``."""
        stmt = select(self._table).order_by(self._table.c.created_at.desc(), self._table.c.id)
        for column, value in where.items():
            stmt = stmt.where(self._table.c[column] == value)
        with self._catalog._transaction(write=False) as conn:
            return [self._record(row) for row in conn.execute(stmt)]

    def change(
        self, record_id: str, *, expect: Collection[str] | None = None, **fields: object
    ) -> R:
        """Set ``fields``; with ``expect`` only while the status is one of those, else Conflict."""
        values = {**fields, "updated_at": utcnow()}
        if "status" in fields:
            values["held_by"] = self._held_by(fields["status"])
        stmt = update(self._table).where(self._table.c.id == record_id).values(values)
        if expect is not None:
            stmt = stmt.where(self._table.c.status.in_(list(expect)))
        with self._catalog._transaction(write=True) as conn:
            if conn.execute(stmt).rowcount != 1:
                status = conn.execute(
                    select(self._table.c.status).where(self._table.c.id == record_id)
                ).scalar()
                if status is None:
                    raise NotFound(f"{self.noun} {record_id} could not be found.")
                raise Conflict(
                    f"{self.noun} {record_id} is {status}; this needs it "
                    + " or ".join(sorted(expect or ()))
                )
        return self.get(record_id)

    def remove(self, record_id: str) -> None:
        with self._catalog._transaction(write=True) as conn:
            conn.execute(delete(self._table).where(self._table.c.id == record_id))


def records(
    catalog: Catalog,
) -> tuple[
    Records[VolumeRecord], Records[SnapshotRecord], Records[ServerRecord], Records[BackupRecord]
]:
    """The four record tables of ``catalog``."""
    return (
        Records(catalog, volumes, VolumeRecord, "Volume"),
        Records(catalog, volume_snapshots, SnapshotRecord, "Snapshot"),
        Records(catalog, servers, ServerRecord, "Server"),
        Records(catalog, backups, BackupRecord, "Backup"),
    )
