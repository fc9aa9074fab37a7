"""Glance's JSON shapes for images, in Glance's key order."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ferry.catalog import ImageRecord, TaskRecord
from ferry.catalog.records import utcnow

CORE_ORDER = (
    "name", "disk_format", "container_format", "visibility", "size", "virtual_size", "status",
    "checksum", "protected", "min_ram", "min_disk", "owner", "os_hidden", "os_hash_algo",
    "os_hash_value", "id", "created_at", "updated_at",
)  # fmt: skip


def timestamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def image(record: ImageRecord) -> dict[str, Any]:
    """An image as ``GET /v2/images/{id}`` shows it."""
    doc: dict[str, Any] = dict(record.properties)  # extra properties first, as Glance
    for key in CORE_ORDER:
        value = getattr(record, key)
        doc[key] = timestamp(value) if isinstance(value, datetime) else value
    active = [loc for loc in record.locations if loc.status == "active"]
    doc["locations"] = [{"url": loc.url, "metadata": dict(loc.metadata)} for loc in active]
    if active:
        doc["direct_url"] = active[0].url
    doc["tags"] = list(record.tags)
    doc["self"] = f"/v2/images/{record.id}"
    doc["file"] = f"/v2/images/{record.id}/file"
    doc["schema"] = "/v2/schemas/image"
    if active:  # sorted, each once: what the conformance tests compare against (see the reference)
        doc["stores"] = ",".join(record.stores)
    return doc


def _micro(when: datetime | None) -> str | None:
    return when.replace(tzinfo=None).isoformat(timespec="microseconds") if when else None


def _job(task: TaskRecord) -> dict[str, Any]:
    """ferry's job view of a task: who holds it, how far it got, how fresh the holder is."""
    held = task.status in ("pending", "processing") and task.lease_owner is not None
    return {
        "worker": task.lease_owner if held else None,
        "lease_expires_at": timestamp(task.lease_expires_at)
        if held and task.lease_expires_at
        else None,
        "heartbeat_age_s": round((utcnow() - task.updated_at).total_seconds(), 1),
        "bytes_done": task.progress_done,
        "bytes_total": task.progress_total,
        "site": task.site,
    }


def task(record: TaskRecord) -> dict[str, Any]:
    """A task as ``GET /v2/tasks/{id}`` shows it (plus ferry's ``job`` view)."""
    doc: dict[str, Any] = {
        "id": record.id,
        "input": record.input,
        "type": record.type,
        "status": record.status,
        "owner": record.owner,
        "message": record.message,
        "result": record.result,
        "created_at": timestamp(record.created_at),
        "updated_at": timestamp(record.updated_at),
        "self": f"/v2/tasks/{record.id}",
        "schema": "/v2/schemas/task",
        "image_id": record.image_id,
        "request_id": record.request_id,
        "user_id": record.user_id,
    }
    if record.expires_at:
        doc["expires_at"] = timestamp(record.expires_at)
    doc["job"] = _job(record)
    return doc


def task_summary(record: TaskRecord) -> dict[str, Any]:
    """A task in ``GET /v2/tasks``: no input, result or message, as Glance."""
    full = task(record)
    keys = ("id", "type", "status", "owner", "created_at", "updated_at", "self", "schema",
            "expires_at")  # fmt: skip
    return {k: full[k] for k in keys if k in full}


def image_task(record: TaskRecord) -> dict[str, Any]:
    """A task in ``GET /v2/images/{id}/tasks``: Glance's database shape (microseconds)."""
    return {
        "id": record.id,
        "type": record.type,
        "status": record.status,
        "owner": record.owner,
        "expires_at": _micro(record.expires_at),
        "created_at": _micro(record.created_at),
        "updated_at": _micro(record.updated_at),
        "deleted_at": None,
        "deleted": False,
        "image_id": record.image_id,
        "request_id": record.request_id,
        "user_id": record.user_id,
        "input": record.input,
        "result": record.result,
        "message": record.message,
        "job": _job(record),
    }
