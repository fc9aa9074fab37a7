"""Glance's image-list filters, sort keys and marker paging, turned into SQL clauses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, false, literal, or_, select, true

from ferry.catalog import schema
from ferry.errors import InvalidRequest

SORT_KEYS = frozenset(
    {
        "name",
        "status",
        "container_format",
        "disk_format",
        "size",
        "id",
        "created_at",
        "updated_at",
        "min_disk",
        "min_ram",
        "visibility",
        "owner",
        "protected",
        "os_hidden",
    }
)
SORT_DIRS = frozenset({"asc", "desc"})
# Filters that compare a core column for equality; everything not named here or below is an
# extra property.
_EQUAL_COLUMNS = ("name", "status", "disk_format", "container_format", "owner", "id")
_BOOL_COLUMNS = ("protected", "os_hidden")
_TIME_COLUMNS = ("created_at", "updated_at")
_TIME_OPERATORS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte"})
VISIBILITY_FILTERS = frozenset({"public", "private", "shared", "community", "all"})
MEMBER_STATUS_FILTERS = frozenset({"pending", "accepted", "rejected", "all"})


@dataclass(frozen=True)
class Viewer:
    """Who lists images: their project, whether they see every project's (Glance's admin),
    and which of their memberships count (Glance's ``member_status``, default accepted)."""

    project_id: str | None
    sees_all: bool = False
    member_status: str = "accepted"


def visible_to(viewer: Viewer) -> ColumnElement[bool]:
    """Images the viewer may see at all (Glance's ``is_image_visible``): those it may list with
    any member status, and images nobody owns."""
    if viewer.sees_all:
        return true()
    anyhow = Viewer(viewer.project_id, member_status="all")
    return or_(_scope(anyhow), schema.images.c.owner.is_(None))


def _scope(viewer: Viewer) -> ColumnElement[bool]:
    """Glance's listing union for a non-admin: public and community images, the project's own,
    and shared images it is a member of with the asked status. Admins see every image."""
    img, members = schema.images, schema.image_members
    if viewer.sees_all:
        return true()
    if viewer.project_id is None:
        return img.c.visibility.in_(("public", "community"))
    membership = [
        members.c.image_id == img.c.id,
        members.c.member_id == viewer.project_id,
    ]
    if viewer.member_status != "all":
        membership.append(members.c.status == viewer.member_status)
    return or_(
        img.c.visibility.in_(("public", "community")),
        img.c.owner == viewer.project_id,
        and_(img.c.visibility == "shared", exists().where(*membership)),
    )


def _community(viewer: Viewer) -> ColumnElement[bool]:
    """Without a visibility filter, community images are listed only to their owner."""
    img = schema.images
    if viewer.project_id is None:
        return img.c.visibility != "community"
    return or_(img.c.visibility != "community", img.c.owner == viewer.project_id)


def image_filters(
    filters: Mapping[str, str | list[str]], viewer: Viewer | None = None
) -> list[ColumnElement[bool]]:
    """WHERE clauses for Glance's image-list filters; a list of values must all hold.

    With a ``viewer``, only the images Glance would list to them (without one, every image:
    the catalogue's own callers).
    """
    img = schema.images
    clauses: list[ColumnElement[bool]] = [img.c.status != "deleted"]
    if viewer is not None:
        clauses.append(_scope(viewer))
        if "visibility" not in filters:
            clauses.append(_community(viewer))
    if "os_hidden" not in filters:
        # Like Glance: hidden images are left out unless the caller asks about os_hidden.
        clauses.append(img.c.os_hidden == false())
    for key, given in filters.items():
        for value in [given] if isinstance(given, str) else given:
            clauses.append(_one_filter(key, value))
    return clauses


def _one_filter(key: str, value: str) -> ColumnElement[bool]:
    img = schema.images
    if key in _EQUAL_COLUMNS:
        return img.c[key] == value
    if key == "visibility":
        return true() if value == "all" else img.c.visibility == value
    if key in _BOOL_COLUMNS:
        return img.c[key] == _parse_bool(key, value)
    if key == "size_min":
        return img.c.size >= _parse_int(key, value)
    if key == "size_max":
        return img.c.size <= _parse_int(key, value)
    if key in _TIME_COLUMNS:
        return _time_filter(img.c[key], value)
    if key == "tag":
        tags = schema.image_tags
        return exists().where(tags.c.image_id == img.c.id, tags.c.value == value)
    props = schema.image_properties
    return exists().where(props.c.image_id == img.c.id, props.c.name == key, props.c.value == value)


def _parse_bool(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise InvalidRequest(f"Invalid value for {key}: {value!r} is not a boolean")


def _parse_int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"Invalid value for {key}: {value!r} is not an integer") from None


def _time_filter(column: Any, value: str) -> ColumnElement[bool]:
    """Compare at the precision given: "eq:2026-11-21T08:01:23Z" means that whole second."""
    operator, sep, when = value.partition(":")
    if not sep or operator not in _TIME_OPERATORS:
        operator, when = "eq", value
    try:
        start = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"Invalid timestamp {when!r}: expected ISO 8601") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    # Stored times keep microseconds, shown ones are whole seconds: a whole-second bound
    # covers the second a user saw.
    end = start + (timedelta(seconds=1) if start.microsecond == 0 else timedelta(microseconds=1))
    within = and_(column >= start, column < end)
    clauses: dict[str, ColumnElement[bool]] = {
        "eq": within,
        "neq": or_(column < start, column >= end),
        "gt": column >= end,
        "gte": column >= start,
        "lt": column < start,
        "lte": column < end,
    }
    return clauses[operator]


def sort_columns(sort: Sequence[tuple[str, str]]) -> list[tuple[Any, str]]:
    """The (column, direction) pairs to order by, ending with id as the tie-breaker."""
    img = schema.images
    if not sort:
        sort = (("created_at", "desc"),)
    order: list[tuple[Any, str]] = []
    for key, direction in sort:
        if key not in SORT_KEYS:
            raise InvalidRequest(f"Invalid sort key: {key}")
        if direction not in SORT_DIRS:
            raise InvalidRequest(f"Invalid sort direction: {direction}")
        order.append((img.c[key], direction))
    if all(column.name != "id" for column, _ in order):
        order.append((img.c.id, order[-1][1]))
    return order


def order_by(order: Sequence[tuple[Any, str]]) -> list[Any]:
    """ORDER BY terms, with NULLs before every value in both backends (PostgreSQL differs)."""
    terms = []
    for column, direction in order:
        if direction == "asc":
            term = column.asc().nulls_first() if column.nullable else column.asc()
        else:
            term = column.desc().nulls_last() if column.nullable else column.desc()
        terms.append(term)
    return terms


def after(order: Sequence[tuple[Any, str]], marker: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after the marker's values in this order (keyset paging, NULL-aware)."""
    branches: list[ColumnElement[bool]] = []
    equal_so_far: list[ColumnElement[bool]] = []
    for (column, direction), raw in zip(order, marker, strict=True):
        # A typed bind, because SQLAlchemy refuses `column > True` with a plain Python bool.
        value = None if raw is None else literal(raw, column.type)
        beyond = _beyond(column, direction, value)
        if beyond is not None:
            branches.append(and_(*equal_so_far, beyond))
        equal_so_far.append(column.is_(None) if value is None else column == value)
    return or_(false(), *branches)


def _beyond(column: Any, direction: str, value: Any) -> ColumnElement[bool] | None:
    # NULL sorts first ascending and last descending (see order_by).
    beyond: ColumnElement[bool]
    if direction == "asc":
        beyond = column.is_not(None) if value is None else column > value
    elif value is None:
        return None
    else:
        beyond = or_(column < value, column.is_(None)) if column.nullable else column < value
    return beyond


def page(
    query: Select[Any], order: Sequence[tuple[Any, str]], marker: Sequence[Any] | None
) -> Select[Any]:
    """Add ORDER BY and, when paging on from a marker row, its keyset condition."""
    if marker is not None:
        query = query.where(after(order, marker))
    return query.order_by(*order_by(order))


def marker_query(order: Sequence[tuple[Any, str]], table: Any, marker_id: str) -> Select[Any]:
    """Select the marker row's values of the sort columns."""
    return select(*(table.c[column.name] for column, _ in order)).where(table.c.id == marker_id)
