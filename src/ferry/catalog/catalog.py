"""The catalogue: images, their properties, tags and locations, tasks, and (through
``resources``) volumes, snapshots, servers and backups, in one database.

Every write runs in one transaction that starts by updating the image's row (status check,
field changes, updated_at). That UPDATE is the serialization point: in PostgreSQL it takes the
row lock, so two writers of one image queue up behind each other and the second sees the
first's committed changes; in SQLite the whole write transaction holds the database's write
lock (BEGIN IMMEDIATE). A status transition is therefore a compare-and-set: the UPDATE has
``WHERE status IN (expected)`` and a rowcount of 0 means another writer got there first.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Row, delete, false, func, insert, select, text, update

from ferry.catalog import listing, members, owners, resources, rows
from ferry.catalog.engine import create_engines
from ferry.catalog.records import UNFINISHED, ImageRecord, Location, TaskRecord, utcnow
from ferry.catalog.schema import (
    image_locations,
    image_members,
    image_properties,
    image_tags,
    images,
    tasks,
)
from ferry.errors import (
    AlreadyExists,
    BackendUnavailable,
    Conflict,
    Forbidden,
    ImportBusy,
    InvalidRequest,
    NotFound,
)

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key that makes concurrent migrate() calls take turns ("ferrycat").
_MIGRATION_LOCK_KEY = 0x66657272_79636174
# Alembic keeps the running migration in module globals (alembic.context, alembic.op), so two
# migrations in one process, even of different databases, must not overlap.
_ALEMBIC_LOCK = threading.Lock()


class Catalog:
    """The image and task catalogue in one SQLite or PostgreSQL database; thread-safe.

    ``store_keys`` maps this site's store ids to the names locations are recorded under
    (their cluster's), so sites that call one cluster's store by different ids share its
    locations; records read back name stores by this site's ids. Without it, ids are kept.
    """

    def __init__(self, url: str, store_keys: Mapping[str, str] | None = None) -> None:
        self._keys = dict(store_keys or {})
        self._stores = {key: store for store, key in self._keys.items()}
        self._engines = create_engines(url)
        self._lock: AbstractContextManager[Any] = (
            threading.RLock() if self._engines.serialized else nullcontext()
        )
        # The live server process (see ``owners.Holders``) that this catalogue's writes act
        # for: a row put into an unfinished status (saving, creating, deleting...) is stamped
        # ``held_by`` it, so after a crash the reconciler knows whose work was cut off.
        self.holder: str | None = None
        self.volumes, self.snapshots, self.servers, self.backups = resources.records(self)
        self.owners = owners.Owners(self)
        self.members = members.Members(self)

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection."""
        self._engines.base.dispose()

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision (a no-op when it is current)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with _ALEMBIC_LOCK, self._transaction(write=True) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    # -- images ----------------------------------------------------------------------------

    def create_image(self, image: ImageRecord) -> ImageRecord:
        """Add a new image with its properties, tags and locations."""
        row = rows.image_row(image)
        props = rows.properties(image.properties)
        tag_values = rows.tags(image.tags)
        for loc in image.locations:
            rows.location(loc)
        if len({loc.store for loc in image.locations}) != len(image.locations):
            raise InvalidRequest("An image has at most one location per store")
        with self._transaction(write=True) as conn:
            try:
                conn.execute(insert(images).values(row))
            except sqlalchemy.exc.IntegrityError as exc:
                raise AlreadyExists(f"Image with identifier {image.id} already exists!") from exc
            self._set_properties(conn, image.id, props, ())
            self._add_tags(conn, image.id, tag_values)
            for loc in image.locations:
                self._put_location(conn, image.id, loc)
            return self._load_one(conn, image.id)

    def get_image(self, image_id: str, viewer: listing.Viewer | None = None) -> ImageRecord:
        """The image with this id; NotFound if it never existed, was deleted, or (with a
        ``viewer``) is not the viewer's to see."""
        with self._transaction(write=False) as conn:
            return self._load_one(conn, image_id, viewer)

    def list_images(
        self,
        *,
        filters: Mapping[str, str | list[str]] | None = None,
        sort: Sequence[tuple[str, str]] = (("created_at", "desc"),),
        marker: str | None = None,
        limit: int = 25,
        viewer: listing.Viewer | None = None,
    ) -> list[ImageRecord]:
        """Images matching Glance's list filters, sorted, from after the marker image on; with
        a ``viewer``, only those Glance lists to it (and a marker it may see)."""
        if limit < 0:
            raise InvalidRequest(f"limit must be a non-negative integer, not {limit}")
        order = listing.sort_columns(sort)
        clauses = listing.image_filters(filters or {}, viewer)
        with self._transaction(write=False) as conn:
            after = None
            if marker is not None:
                found = listing.marker_query(order, images, marker).where(
                    images.c.status != "deleted"
                )
                if viewer is not None:
                    found = found.where(listing.visible_to(viewer))
                after = conn.execute(found).first()
                if after is None:
                    raise InvalidRequest(f"Marker {marker} could not be found.")
            query = listing.page(select(images).where(*clauses), order, after).limit(limit)
            return self._load(conn, conn.execute(query).all())

    def update_image(
        self,
        image_id: str,
        *,
        expect_status: Collection[str] | None = None,
        fields: Mapping[str, object] | None = None,
        set_properties: Mapping[str, str] | None = None,
        remove_properties: Collection[str] = (),
        tags: Collection[str] | None = None,
        add_tags: Collection[str] = (),
        remove_tags: Collection[str] = (),
    ) -> ImageRecord:
        """Change an image in one transaction, only if its status is in expect_status.

        Properties are removed before others are set; tags are replaced by ``tags`` (if given),
        then ``remove_tags`` are removed and ``add_tags`` added.
        """
        changes = rows.image_fields(fields or {})
        props = rows.properties(set_properties or {})
        for name in remove_properties:
            rows.check_property_name(name)
        new_tags = None if tags is None else rows.tags(tags)
        added, removed = rows.tags(add_tags), rows.tags(remove_tags)
        with self._transaction(write=True) as conn:
            self._change(conn, image_id, expect_status, changes)
            self._set_properties(conn, image_id, props, remove_properties)
            if new_tags is not None:
                conn.execute(delete(image_tags).where(image_tags.c.image_id == image_id))
                self._add_tags(conn, image_id, new_tags)
            if removed:
                conn.execute(
                    delete(image_tags).where(
                        image_tags.c.image_id == image_id, image_tags.c.value.in_(removed)
                    )
                )
            self._add_tags(conn, image_id, added)
            return self._load_one(conn, image_id)

    def delete_image(self, image_id: str) -> ImageRecord:
        """Mark an image deleted (hidden from now on); return it as it was, for data removal.

        Its locations are kept, marked "deleting", until ``forget_location`` says that store's
        data is gone; the row is held by this catalogue's holder meanwhile, so if it dies the
        reconciler finishes the delete. A protected image is not deleted (Forbidden), as Glance.
        Its members go at once.
        """
        with self._transaction(write=True) as conn:
            self._change(conn, image_id, None, {})  # takes the row lock before reading
            record = self._load_one(conn, image_id)
            if record.protected:
                raise Forbidden(f"Image {image_id} is protected and cannot be deleted.")
            now = utcnow()
            conn.execute(
                update(images)
                .where(images.c.id == image_id)
                .values(status="deleted", deleted_at=now, updated_at=now, held_by=self.holder)
            )
            conn.execute(
                update(image_locations)
                .where(image_locations.c.image_id == image_id)
                .values(status="deleting", updated_at=now)
            )
            conn.execute(delete(image_members).where(image_members.c.image_id == image_id))
            conn.execute(  # a running import stops at its next heartbeat (within a second)
                update(tasks)
                .where(tasks.c.image_id == image_id, tasks.c.status.in_(list(UNFINISHED)))
                .values(status="failure", message="The image was deleted", updated_at=now)
            )
            return record

    def add_location(
        self,
        image_id: str,
        location: Location,
        *,
        one_per_store: bool = True,
        expect_status: Collection[str] | None = None,
        fields: Mapping[str, object] | None = None,
        set_properties: Mapping[str, str] | None = None,
    ) -> ImageRecord:
        """Add or replace the image's location in a store (a replaced one keeps its place).

        With ``one_per_store`` off (an http store, which may hold several URLs of an image),
        only a location with the same URL in that store is replaced; another is added.
        """
        rows.location(location)
        changes = rows.image_fields(fields or {})
        props = rows.properties(set_properties or {})
        with self._transaction(write=True) as conn:
            self._change(conn, image_id, expect_status, changes)
            self._set_properties(conn, image_id, props, ())
            self._put_location(conn, image_id, location, one_per_store)
            return self._load_one(conn, image_id)

    def remove_location(
        self,
        image_id: str,
        store: str,
        *,
        url: str | None = None,
        expect_status: Collection[str] | None = None,
        fields: Mapping[str, object] | None = None,
    ) -> ImageRecord:
        """Remove the image's locations in a store (only ``url``'s, if given); NotFound if it
        has none there."""
        changes = rows.image_fields(fields or {})
        where = [image_locations.c.image_id == image_id]
        where.append(image_locations.c.store == self.store_key(store))
        if url is not None:
            where.append(image_locations.c.url == url)
        with self._transaction(write=True) as conn:
            self._change(conn, image_id, expect_status, changes)
            gone = conn.execute(delete(image_locations).where(*where))
            if gone.rowcount == 0:
                raise NotFound(f"Image {image_id} is not stored in store {store}.")
            return self._load_one(conn, image_id)

    def store_key(self, store: str) -> str:
        """How the catalogue names this site's store ``store`` (its cluster's key)."""
        return self._keys.get(store, store)

    def forget_location(self, image_id: str, store: str) -> None:
        """Drop a location row whatever the image's status (a deleted image's data is gone)."""
        with self._transaction(write=True) as conn:
            conn.execute(
                delete(image_locations).where(
                    image_locations.c.image_id == image_id,
                    image_locations.c.store == self.store_key(store),
                )
            )

    # -- tasks -----------------------------------------------------------------------------

    def create_task(self, task: TaskRecord, *, sole_for_image: bool = False) -> TaskRecord:
        """Add a new task; with ``sole_for_image``, ImportBusy if the image has an unfinished one.

        The check locks the image row first (``SELECT ... FOR UPDATE`` in PostgreSQL, the
        write lock in SQLite), so of two concurrent imports of one image only one is created.
        """
        row = rows.task_row(task)
        with self._transaction(write=True) as conn:
            if sole_for_image and task.image_id is not None:
                locked = select(images.c.id).where(images.c.id == task.image_id).with_for_update()
                if conn.execute(locked).first() is None:
                    raise NotFound(f"No image found with ID {task.image_id}")
                busy = conn.execute(
                    select(tasks.c.id).where(
                        tasks.c.image_id == task.image_id,
                        tasks.c.status.in_(list(UNFINISHED)),
                    )
                ).scalar()
                if busy is not None:
                    raise ImportBusy(
                        f"Image {task.image_id} is already being imported by task {busy}"
                    )
            try:
                conn.execute(insert(tasks).values(row))
            except sqlalchemy.exc.IntegrityError as exc:
                raise AlreadyExists(f"Task with identifier {task.id} already exists!") from exc
            return self._load_task(conn, task.id)

    def get_task(self, task_id: str) -> TaskRecord:
        """The task with this id."""
        with self._transaction(write=False) as conn:
            return self._load_task(conn, task_id)

    def list_tasks(
        self,
        *,
        image_id: str | None = None,
        status: str | None = None,
        type: str | None = None,
        sort_dir: str = "desc",
        limit: int = 25,
        marker: str | None = None,
    ) -> list[TaskRecord]:
        """Tasks, newest first by default (Glance lists an image's tasks oldest first)."""
        if sort_dir not in listing.SORT_DIRS:
            raise InvalidRequest(f"Invalid sort direction: {sort_dir}")
        if limit < 0:
            raise InvalidRequest(f"limit must be a non-negative integer, not {limit}")
        order = [(tasks.c.created_at, sort_dir), (tasks.c.id, sort_dir)]
        query = select(tasks)
        for column, value in (("image_id", image_id), ("status", status), ("type", type)):
            if value is not None:
                query = query.where(tasks.c[column] == value)
        with self._transaction(write=False) as conn:
            after = None
            if marker is not None:
                after = conn.execute(listing.marker_query(order, tasks, marker)).first()
                if after is None:
                    raise InvalidRequest(f"Marker {marker} could not be found.")
            query = listing.page(query, order, after).limit(limit)
            return [rows.task_record(row) for row in conn.execute(query)]

    def update_task(
        self, task_id: str, *, expect_status: Collection[str] | None = None, **fields: object
    ) -> TaskRecord:
        """Change a task's fields, only if its status is in expect_status (when given)."""
        changes = rows.task_fields(fields)
        changes["updated_at"] = utcnow()
        with self._transaction(write=True) as conn:
            stmt = update(tasks).where(tasks.c.id == task_id).values(changes)
            if expect_status is not None:
                stmt = stmt.where(tasks.c.status.in_(list(expect_status)))
            if conn.execute(stmt).rowcount != 1:
                current = self._load_task(conn, task_id)  # NotFound if there is none
                raise Conflict(
                    f"Task {task_id} has status {current.status}, "
                    f"not {' or '.join(sorted(expect_status or ()))}"
                )
            return self._load_task(conn, task_id)

    def claim_task(self, site: str, worker: str, lease: timedelta) -> TaskRecord | None:
        """Take the oldest unfinished task of ``site`` nobody holds (or whose holder's lease
        lapsed) for ``worker`` until ``now + lease``; None when there is none.

        A compare-and-set on the previous holder and expiry: of two workers racing for one
        task, one update matches and the other finds nothing and tries the next candidate.
        """
        now = utcnow()
        free = (tasks.c.lease_owner.is_(None)) | (tasks.c.lease_expires_at < now)
        candidates = (
            select(tasks.c.id, tasks.c.lease_owner, tasks.c.lease_expires_at)
            .where(tasks.c.site == site, tasks.c.status.in_(list(UNFINISHED)), free)
            .order_by(tasks.c.created_at)
            .limit(8)
        )
        with self._transaction(write=True) as conn:
            for task_id, owner, expires in conn.execute(candidates).all():
                same_holder = (
                    tasks.c.lease_owner.is_(None) if owner is None else tasks.c.lease_owner == owner
                )
                same_expiry = (
                    tasks.c.lease_expires_at.is_(None)
                    if expires is None
                    else tasks.c.lease_expires_at == expires
                )
                taken = conn.execute(
                    update(tasks)
                    .where(tasks.c.id == task_id, same_holder, same_expiry)
                    .values(
                        lease_owner=worker,
                        lease_expires_at=now + lease,
                        status="processing",
                        updated_at=now,
                    )
                )
                if taken.rowcount == 1:
                    return self._load_task(conn, task_id)
        return None

    def hold_task(
        self, task_id: str, worker: str, lease: timedelta, **fields: object
    ) -> TaskRecord:
        """Renew ``worker``'s lease (and change ``fields``); Conflict if another worker took
        the task over meanwhile, or it was finished by another hand (its image was deleted):
        the caller must stop working on it."""
        changes = rows.task_fields(fields)
        now = utcnow()
        changes.update(updated_at=now, lease_expires_at=now + lease)
        with self._transaction(write=True) as conn:
            stmt = (
                update(tasks)
                .where(
                    tasks.c.id == task_id,
                    tasks.c.lease_owner == worker,
                    tasks.c.status.in_(list(UNFINISHED)),
                )
                .values(changes)
            )
            if conn.execute(stmt).rowcount != 1:
                current = self._load_task(conn, task_id)
                raise Conflict(f"Task {task_id} is now held by {current.lease_owner}, not {worker}")
            return self._load_task(conn, task_id)

    # -- internals -------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        engine = self._engines.write if write else self._engines.read
        try:
            with self._lock, engine.begin() as conn:
                yield conn
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
            raise BackendUnavailable(f"Catalogue database error: {exc.orig}") from exc

    def _change(
        self,
        conn: Connection,
        image_id: str,
        expect_status: Collection[str] | None,
        changes: Mapping[str, object],
    ) -> None:
        """Update the image row (and so lock it); Conflict if its status is not expected."""
        values = {**changes, "updated_at": utcnow()}
        if "status" in changes:  # an upload's row is held by its process while it runs
            values["held_by"] = self.holder if changes["status"] in owners.HELD_IMAGE else None
        stmt = (
            update(images)
            .where(images.c.id == image_id, images.c.status != "deleted")
            .values(values)
        )
        if expect_status is not None:
            stmt = stmt.where(images.c.status.in_(list(expect_status)))
        if "status" in changes:  # not while another process holds it (an upload, a clean-up)
            mine = images.c.held_by == self.holder if self.holder else false()
            stmt = stmt.where(images.c.held_by.is_(None) | mine)
        if conn.execute(stmt).rowcount == 1:
            return
        row = conn.execute(select(images.c.status, images.c.held_by).where(images.c.id == image_id))
        current, holder = row.first() or (None, None)
        if current is None or current == "deleted":
            raise NotFound(f"No image found with ID {image_id}")
        if holder is not None and holder != self.holder and current in (expect_status or ()):
            raise Conflict(f"Image {image_id} is being worked on by {holder}; try again later")
        raise Conflict(
            f"Image {image_id} has status {current}, not {' or '.join(sorted(expect_status or ()))}"
        )

    def _set_properties(
        self, conn: Connection, image_id: str, props: Mapping[str, str], remove: Collection[str]
    ) -> None:
        names = set(props) | set(remove)
        if names:
            conn.execute(
                delete(image_properties).where(
                    image_properties.c.image_id == image_id, image_properties.c.name.in_(names)
                )
            )
        if props:
            conn.execute(
                insert(image_properties),
                [{"image_id": image_id, "name": k, "value": v} for k, v in props.items()],
            )

    def _add_tags(self, conn: Connection, image_id: str, values: set[str]) -> None:
        if not values:
            return
        present = conn.execute(
            select(image_tags.c.value).where(
                image_tags.c.image_id == image_id, image_tags.c.value.in_(values)
            )
        ).scalars()
        missing = values - set(present)
        if missing:
            conn.execute(
                insert(image_tags), [{"image_id": image_id, "value": v} for v in sorted(missing)]
            )

    def _put_location(
        self, conn: Connection, image_id: str, loc: Location, one_per_store: bool = True
    ) -> None:
        """Replace the image's location in the store (with ``loc``'s URL, unless
        ``one_per_store``), or add it at the end; the caller holds the image row's lock."""
        now = utcnow()
        key = self.store_key(loc.store)
        metadata = {k: v for k, v in loc.metadata.items() if k != "store"}  # this site's name
        values = {"url": loc.url, "status": loc.status, "metadata": metadata, "updated_at": now}
        same = [image_locations.c.image_id == image_id, image_locations.c.store == key]
        if not one_per_store:
            same.append(image_locations.c.url == loc.url)
        replaced = conn.execute(update(image_locations).where(*same).values(values))
        if replaced.rowcount:
            return
        last = conn.execute(
            select(func.max(image_locations.c.position)).where(
                image_locations.c.image_id == image_id
            )
        ).scalar()
        position = 0 if last is None else last + 1
        conn.execute(
            insert(image_locations).values(
                image_id=image_id, store=key, position=position, created_at=now, **values
            )
        )

    def _load_one(
        self, conn: Connection, image_id: str, viewer: listing.Viewer | None = None
    ) -> ImageRecord:
        query = select(images).where(images.c.id == image_id, images.c.status != "deleted")
        if viewer is not None:
            query = query.where(listing.visible_to(viewer))
        row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"No image found with ID {image_id}")
        return self._load(conn, [row])[0]

    def _load(self, conn: Connection, image_rows: Sequence[Row[Any]]) -> list[ImageRecord]:
        """ImageRecords for image rows, with their child rows fetched in one query per table."""
        ids = [row.id for row in image_rows]
        if not ids:
            return []
        props: dict[str, dict[str, str]] = defaultdict(dict)
        for image_id, name, value in conn.execute(
            select(
                image_properties.c.image_id, image_properties.c.name, image_properties.c.value
            ).where(image_properties.c.image_id.in_(ids))
        ):
            props[image_id][name] = value
        tag_values: dict[str, list[str]] = defaultdict(list)
        for image_id, value in conn.execute(
            select(image_tags.c.image_id, image_tags.c.value).where(image_tags.c.image_id.in_(ids))
        ):
            tag_values[image_id].append(value)
        locs: dict[str, list[Location]] = defaultdict(list)
        for row in conn.execute(
            select(image_locations)
            .where(image_locations.c.image_id.in_(ids))
            .order_by(image_locations.c.image_id, image_locations.c.position)
        ):
            locs[row.image_id].append(rows.location_record(row, self._stores))
        return [
            rows.image_record(row, props[row.id], tag_values[row.id], locs[row.id])
            for row in image_rows
        ]

    def _load_task(self, conn: Connection, task_id: str) -> TaskRecord:
        row = conn.execute(select(tasks).where(tasks.c.id == task_id)).first()
        if row is None:
            raise NotFound(f"Task with the given ID {task_id} could not be found")
        return rows.task_record(row)
