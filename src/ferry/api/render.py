"""Glance's JSON shapes for images, in Glance's key order."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ferry.catalog import ImageRecord

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
    if active:  # sorted: what the conformance tests compare against (see the reference)
        doc["stores"] = ",".join(sorted(loc.store for loc in active))
    return doc
