"""Image members (Glance's ``image_members``): the projects a shared image is shared with.

One row per image and project, with the project's answer (pending, accepted, rejected). Adding a
member locks the image's row first (``SELECT ... FOR UPDATE`` in PostgreSQL, the write lock in
SQLite), so two concurrent adds cannot both pass the quota, and a member is never added to an
image a concurrent delete has just removed. Deleting the image removes its members
(``Catalog.delete_image``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, get_args

from sqlalchemy import Connection, Row, delete, func, insert, select, update

from ferry.catalog.records import utcnow
from ferry.catalog.schema import image_members, images
from ferry.errors import AlreadyExists, NotFound, TooLarge

if TYPE_CHECKING:
    from ferry.catalog.catalog import Catalog

MemberStatus = Literal["pending", "accepted", "rejected"]
MEMBER_STATUSES: tuple[MemberStatus, ...] = get_args(MemberStatus)


@dataclass(frozen=True)
class MemberRecord:
    """One project's membership of one image."""

    image_id: str
    member_id: str
    status: MemberStatus = "pending"
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


class Members:
    """The ``image_members`` rows of one catalogue."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def add(self, image_id: str, member_id: str, *, most: int) -> MemberRecord:
        """Add ``member_id`` (pending) to the image.

        TooLarge if the image would have more than ``most`` members (a negative ``most`` is no
        limit), AlreadyExists if it is one already, NotFound if the image is gone. The quota is
        checked first, as Glance does.
        """
        now = utcnow()
        record = MemberRecord(image_id, member_id, "pending", now, now)
        with self._catalog._transaction(write=True) as conn:
            locked = select(images.c.id).where(
                images.c.id == image_id, images.c.status != "deleted"
            )
            if conn.execute(locked.with_for_update()).first() is None:
                raise NotFound(f"No image found with ID {image_id}")
            count = conn.execute(
                select(func.count()).where(image_members.c.image_id == image_id)
            ).scalar_one()
            if 0 <= most < count + 1:
                raise TooLarge(
                    "The limit has been exceeded on the number of allowed image members for "
                    f"this image. Attempted: {count + 1}, Maximum: {most}"
                )
            if self._row(conn, image_id, member_id) is not None:
                raise AlreadyExists(
                    f"The target member {member_id} is already associated with image {image_id}."
                )
            conn.execute(insert(image_members).values(**record.__dict__))
        return record

    def get(self, image_id: str, member_id: str) -> MemberRecord:
        """The membership; NotFound when the project is not a member of the image."""
        with self._catalog._transaction(write=False) as conn:
            row = self._row(conn, image_id, member_id)
        if row is None:
            raise NotFound(f"{member_id} not found in the member list of the image {image_id}.")
        return _record(row)

    def list(self, image_id: str, *, member_id: str | None = None) -> list[MemberRecord]:
        """The image's members, oldest first; with ``member_id``, that project's row only."""
        query = select(image_members).where(image_members.c.image_id == image_id)
        if member_id is not None:
            query = query.where(image_members.c.member_id == member_id)
        query = query.order_by(image_members.c.created_at, image_members.c.member_id)
        with self._catalog._transaction(write=False) as conn:
            return [_record(row) for row in conn.execute(query)]

    def set_status(self, image_id: str, member_id: str, status: MemberStatus) -> MemberRecord:
        """Record the member's answer; NotFound when it is not a member."""
        if status not in MEMBER_STATUSES:
            raise ValueError(f"unknown member status {status!r}")
        with self._catalog._transaction(write=True) as conn:
            done = conn.execute(
                update(image_members)
                .where(image_members.c.image_id == image_id, image_members.c.member_id == member_id)
                .values(status=status, updated_at=utcnow())
            )
            if done.rowcount != 1:
                raise NotFound(f"{member_id} not found in the member list of the image {image_id}.")
            row = self._row(conn, image_id, member_id)
        assert row is not None
        return _record(row)

    def remove(self, image_id: str, member_id: str) -> None:
        """Remove the membership; NotFound when there is none."""
        with self._catalog._transaction(write=True) as conn:
            done = conn.execute(
                delete(image_members).where(
                    image_members.c.image_id == image_id, image_members.c.member_id == member_id
                )
            )
        if done.rowcount != 1:
            raise NotFound(f"{member_id} not found in the member list of the image {image_id}.")

    @staticmethod
    def _row(conn: Connection, image_id: str, member_id: str) -> Row[Any] | None:
        return conn.execute(
            select(image_members).where(
                image_members.c.image_id == image_id, image_members.c.member_id == member_id
            )
        ).first()


def _record(row: Row[Any]) -> MemberRecord:
    return MemberRecord(**row._mapping)
