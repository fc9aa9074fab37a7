"""Checking records and fields, and turning them into rows and back."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from ferry.catalog.records import (
    IMAGE_FIELDS,
    IMAGE_STATUSES,
    LOCATION_STATUSES,
    RESERVED_PROPERTIES,
    TASK_FIELDS,
    TASK_STATUSES,
    VISIBILITIES,
    ImageRecord,
    Location,
    TaskRecord,
)
from ferry.errors import InvalidRequest

# Limits from Glance's schema, checked here so SQLite (which ignores VARCHAR lengths) and
# PostgreSQL (which raises) answer alike.
MAX_NAME = 255
MAX_PROPERTY_VALUE = 65535  # Glance's image_properties.value column (MySQL TEXT)
# The columns' integer types: BIGINT for sizes, INTEGER for Glance's min_disk and min_ram.
_INT_FIELDS = {
    "size": (1 << 63) - 1,
    "virtual_size": (1 << 63) - 1,
    "min_disk": (1 << 31) - 1,
    "min_ram": (1 << 31) - 1,
}
_BOOL_FIELDS = ("protected", "os_hidden")
_TEXT_LIMITS = {
    "name": MAX_NAME,
    "owner": MAX_NAME,
    "disk_format": 30,
    "container_format": 30,
    "checksum": 32,
    "os_hash_algo": 64,
    "os_hash_value": 128,
}


def image_fields(fields: Mapping[str, object]) -> dict[str, object]:
    """Check update_image's core-column changes; "deleted" is delete_image's alone."""
    for key, value in fields.items():
        if key not in IMAGE_FIELDS:
            raise InvalidRequest(f"Attribute '{key}' is not a settable image field")
        _check_image_field(key, value)
    if fields.get("status") == "deleted":
        raise InvalidRequest("An image is deleted with delete_image, not by setting its status")
    return dict(fields)


def _check_image_field(key: str, value: object) -> None:
    if key == "status":
        if value not in IMAGE_STATUSES:
            raise InvalidRequest(f"Invalid image status: {value!r}")
    elif key == "visibility":
        if value not in VISIBILITIES:
            raise InvalidRequest(f"Invalid visibility value: {value!r}")
    elif key in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise InvalidRequest(f"Attribute '{key}' must be a boolean, not {value!r}")
    elif key in _INT_FIELDS:
        nullable = key in ("size", "virtual_size")
        most = _INT_FIELDS[key]
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most
        if not (ok or (nullable and value is None)):
            raise InvalidRequest(f"Attribute '{key}' must be an integer from 0 to {most}")
    elif key in _TEXT_LIMITS and value is not None:
        if not isinstance(value, str) or len(value) > _TEXT_LIMITS[key]:
            raise InvalidRequest(
                f"Attribute '{key}' must be a string of at most {_TEXT_LIMITS[key]} characters"
            )
        text(value, f"Attribute '{key}'")


def text(value: str, what: str) -> None:
    """Refuse what no column (nor PostgreSQL's TEXT) can hold: NUL and unpaired surrogates."""
    if "\x00" in value:
        raise InvalidRequest(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(f"{what} must be valid Unicode (no lone surrogates)") from exc


def properties(values: Mapping[str, str]) -> dict[str, str]:
    """Check extra properties: string values, names that shadow no core attribute."""
    for name, value in values.items():
        check_property_name(name)
        if not isinstance(value, str):
            raise InvalidRequest(f"Property '{name}' must be a string, not {value!r}")
        if len(value) > MAX_PROPERTY_VALUE:
            raise InvalidRequest(
                f"Property '{name}' must be at most {MAX_PROPERTY_VALUE} characters long"
            )
        text(value, f"Property '{name}'")
    return dict(values)


def check_property_name(name: str) -> None:
    """Refuse names Glance reserves and names the column cannot hold."""
    if name in RESERVED_PROPERTIES:
        raise InvalidRequest(f"Attribute '{name}' is reserved.")
    if not name or len(name) > MAX_NAME:
        raise InvalidRequest(f"Property names must be 1 to {MAX_NAME} characters")
    text(name, "Property names")


def tags(values: Iterable[str]) -> set[str]:
    """Check tags: non-empty strings of at most 255 characters."""
    result = set(values)
    for tag in result:
        if not isinstance(tag, str) or not tag or len(tag) > MAX_NAME:
            raise InvalidRequest(f"Invalid tag {tag!r}: 1 to {MAX_NAME} characters")
        text(tag, "Tags")
    return result


def location(loc: Location) -> None:
    """Check a location's status."""
    if loc.status not in LOCATION_STATUSES:
        raise InvalidRequest(f"Invalid location status: {loc.status!r}")
    if not loc.store or len(loc.store) > MAX_NAME:
        raise InvalidRequest(f"Store ids must be 1 to {MAX_NAME} characters")


def aware(name: str, value: object) -> None:
    """Refuse naive datetimes: the catalogue only stores UTC instants."""
    if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
        raise InvalidRequest(f"{name} must be a timezone-aware datetime, not {value!r}")


def image_row(image: ImageRecord) -> dict[str, Any]:
    """The images-table row of a new image, checked."""
    row = {key: getattr(image, key) for key in IMAGE_FIELDS}
    for key, value in row.items():
        _check_image_field(key, value)
    if image.status == "deleted":
        raise InvalidRequest("A new image cannot be deleted already")
    if not image.id or len(image.id) > 36:
        raise InvalidRequest(f"Invalid image id {image.id!r}")
    aware("created_at", image.created_at)
    aware("updated_at", image.updated_at)
    row.update(id=image.id, created_at=image.created_at, updated_at=image.updated_at)
    return row


def image_record(
    row: Row[Any], props: Mapping[str, str], tag_values: Collection[str], locs: list[Location]
) -> ImageRecord:
    """An ImageRecord from its images row and its child rows."""
    return ImageRecord(
        id=row.id,
        name=row.name,
        status=row.status,
        disk_format=row.disk_format,
        container_format=row.container_format,
        size=row.size,
        virtual_size=row.virtual_size,
        checksum=row.checksum,
        os_hash_algo=row.os_hash_algo,
        os_hash_value=row.os_hash_value,
        owner=row.owner,
        visibility=row.visibility,
        protected=bool(row.protected),
        os_hidden=bool(row.os_hidden),
        min_disk=row.min_disk,
        min_ram=row.min_ram,
        created_at=row.created_at,
        updated_at=row.updated_at,
        properties=dict(sorted(props.items())),
        tags=tuple(sorted(tag_values)),
        locations=tuple(locs),
    )


def location_record(row: Row[Any], stores: Mapping[str, str]) -> Location:
    """A Location from its image_locations row, its store named as ``stores`` maps its key."""
    store = stores.get(row.store, row.store)
    metadata = {**row._mapping["metadata"], "store": store}
    return Location(store=store, url=row.url, status=row.status, metadata=metadata)


def task_fields(fields: Mapping[str, object]) -> dict[str, object]:
    """Check update_task's changes."""
    for key, value in fields.items():
        if key not in TASK_FIELDS:
            raise InvalidRequest(f"Attribute '{key}' is not a settable task field")
        _check_task_field(key, value)
    return dict(fields)


def _check_task_field(key: str, value: object) -> None:
    if key == "status" and value not in TASK_STATUSES:
        raise InvalidRequest(f"Invalid task status: {value!r}")
    if key in ("expires_at", "lease_expires_at"):
        aware(key, value)
    if key == "progress_done" and not (isinstance(value, int) and value >= 0):
        raise InvalidRequest("progress_done must be a non-negative integer")
    if key in ("input", "checkpoint", "result") and not (
        isinstance(value, dict) or (value is None and key != "input")
    ):
        raise InvalidRequest(f"Task {key} must be a JSON object")


def task_row(task: TaskRecord) -> dict[str, Any]:
    """The tasks-table row of a new task, checked."""
    row = {key: getattr(task, key) for key in TASK_FIELDS}
    for key, value in row.items():
        _check_task_field(key, value)
    if not task.id or len(task.id) > 36:
        raise InvalidRequest(f"Invalid task id {task.id!r}")
    aware("created_at", task.created_at)
    aware("updated_at", task.updated_at)
    row.update(id=task.id, created_at=task.created_at, updated_at=task.updated_at)
    return row


def task_record(row: Row[Any]) -> TaskRecord:
    """A TaskRecord from its tasks row."""
    return TaskRecord(
        **{key: getattr(row, key) for key in (*TASK_FIELDS, "id", "created_at", "updated_at")}
    )
