"""The catalogue's value objects: images, their locations, and tasks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Glance's image statuses (schemas-image.json); "deleted" rows are kept but never shown.
IMAGE_STATUSES = frozenset(
    {
        "queued",
        "saving",
        "uploading",
        "importing",
        "active",
        "killed",
        "deactivated",
        "deleted",
        "pending_delete",
    }
)
VISIBILITIES = frozenset({"public", "private", "shared", "community"})
LOCATION_STATUSES = frozenset({"active", "pending", "deleting"})
TASK_STATUSES = frozenset({"pending", "processing", "success", "failure"})
UNFINISHED = ("pending", "processing")

# Core image columns that update_image(fields=...) may set; id and created_at never change and
# updated_at is the catalogue's to bump.
IMAGE_FIELDS = frozenset(
    {
        "name",
        "status",
        "disk_format",
        "container_format",
        "size",
        "virtual_size",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "owner",
        "visibility",
        "protected",
        "os_hidden",
        "min_disk",
        "min_ram",
    }
)
# Extra properties may not shadow what Glance renders at the top level of an image.
RESERVED_PROPERTIES = IMAGE_FIELDS | {
    "id",
    "created_at",
    "updated_at",
    "deleted",
    "deleted_at",
    "tags",
    "locations",
    "direct_url",
    "stores",
    "self",
    "file",
    "schema",
}
TASK_FIELDS = frozenset(
    {
        "type",
        "status",
        "owner",
        "image_id",
        "request_id",
        "user_id",
        "input",
        "result",
        "message",
        "expires_at",
        "lease_owner",
        "lease_expires_at",
        "progress_done",
        "progress_total",
        "checkpoint",
        "site",
    }
)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Location:
    """Where one store holds an image's data: one per image in a block store, any number
    (their URLs) in an http store."""

    store: str
    url: str
    status: str = "active"  # "active" | "pending" (being written) | "deleting"
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Glance always shows {"store": <id>} in a multi-store location's metadata.
        if "store" not in self.metadata:
            object.__setattr__(self, "metadata", {"store": self.store, **self.metadata})


@dataclass(frozen=True)
class ImageRecord:
    """One image as the catalogue stores it."""

    id: str
    name: str | None = None
    status: str = "queued"
    disk_format: str | None = None
    container_format: str | None = None
    size: int | None = None
    virtual_size: int | None = None
    checksum: str | None = None
    os_hash_algo: str | None = None
    os_hash_value: str | None = None
    owner: str | None = None
    visibility: str = "shared"
    protected: bool = False
    os_hidden: bool = False
    min_disk: int = 0
    min_ram: int = 0
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    properties: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    locations: tuple[Location, ...] = ()

    @property
    def stores(self) -> tuple[str, ...]:
        """Ids of the stores holding the image's data (active locations), sorted."""
        return tuple(sorted({loc.store for loc in self.locations if loc.status == "active"}))


@dataclass(frozen=True)
class TaskRecord:
    """One task (Glance's api_image_import, ...) and its durable-job bookkeeping."""

    id: str
    type: str
    status: str = "pending"
    owner: str | None = None
    image_id: str | None = None
    request_id: str | None = None
    user_id: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    message: str = ""
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    expires_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    progress_done: int = 0
    progress_total: int | None = None
    checkpoint: dict[str, Any] | None = None
    site: str | None = None
