"""The catalogue's tables, as SQLAlchemy Core metadata (migrations/ creates them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone, so store UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the catalogue stores aware UTC times")
        value = value.astimezone(UTC)
        # SQLite compares the stored text; keep one zone-less format so comparisons hold.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSON that maps Python None to SQL NULL, so "no result yet" is NULL and not the text 'null'.
NullableJSON = JSON(none_as_null=True)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

images = Table(
    "images",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255)),
    Column("status", String(30), nullable=False),
    Column("disk_format", String(30)),
    Column("container_format", String(30)),
    Column("size", BigInteger),
    Column("virtual_size", BigInteger),
    Column("checksum", String(32)),
    Column("os_hash_algo", String(64)),
    Column("os_hash_value", String(128)),
    Column("owner", String(255)),
    Column("visibility", String(20), nullable=False),
    Column("protected", Boolean, nullable=False),
    Column("os_hidden", Boolean, nullable=False),
    Column("min_disk", Integer, nullable=False),
    Column("min_ram", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("deleted_at", UTCDateTime),
    # The holder (a live server process, see ``holders``) doing unfinished work on the row:
    # an upload (saving), a delete whose data is not gone yet. NULL when nobody is.
    Column("held_by", String(255)),
    Index(None, "status"),
    Index(None, "owner"),
    Index(None, "created_at"),
    Index(None, "updated_at"),
    Index(None, "name"),
)

image_properties = Table(
    "image_properties",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Index(None, "name"),
)

image_tags = Table(
    "image_tags",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("value", String(255), primary_key=True),
    Index(None, "value"),
)

# A block store holds one location per image (its URL follows from the store); an http store
# may hold several URLs of one image, as Glance's. Rows are keyed by their place in the list.
image_locations = Table(
    "image_locations",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    # Glance lists locations in the order they landed; direct_url is the first.
    Column("position", Integer, primary_key=True),
    Column("store", String(255), nullable=False),
    Column("url", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("metadata", NullableJSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "store"),
)

# Projects an image is shared with (Glance's image_members): only a ``shared`` image's members
# see it, and a member lists it once it accepted. Removed with the image.
image_members = Table(
    "image_members",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("member_id", String(255), primary_key=True),  # a project id
    Column("status", String(20), nullable=False),  # pending, accepted, rejected
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "member_id"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("type", String(30), nullable=False),
    Column("status", String(30), nullable=False),
    Column("owner", String(255)),
    Column("image_id", String(36)),
    Column("request_id", String(64)),
    Column("user_id", String(255)),
    Column("input", NullableJSON, nullable=False),
    Column("result", NullableJSON),
    Column("message", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    # Durable-job lease: which worker runs the task, until when; a worker whose lease lapsed
    # is presumed dead and another takes the task over from its checkpoint.
    Column("lease_owner", String(255)),
    Column("lease_expires_at", UTCDateTime),
    Column("progress_done", BigInteger, nullable=False),
    Column("progress_total", BigInteger),
    Column("checkpoint", NullableJSON),
    # The site whose workers run the task: a job touches that site's stores.
    Column("site", String(255)),
    Index(None, "image_id"),
    Index(None, "created_at"),
    Index(None, "status", "lease_expires_at"),
    Index(None, "site", "status"),
)

# --- volumes, their snapshots, instances' disks and backups (Cinder's and Nova's records) ----

volumes = Table(
    "volumes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255)),
    Column("description", Text),
    Column("status", String(30), nullable=False),
    Column("size", Integer, nullable=False),  # GiB, as Cinder
    Column("availability_zone", String(255), nullable=False),
    Column("bootable", Boolean, nullable=False),
    Column("source", NullableJSON, nullable=False),  # {"image_id"|"snapshot_id"|"source_volid"}
    Column("volume_image_metadata", NullableJSON),
    Column("attached_to", String(36)),  # the server using it
    Column("project_id", String(255), nullable=False),
    Column("user_id", String(255)),
    Column("held_by", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "availability_zone"),
    Index(None, "created_at"),
    Index(None, "project_id"),
)

volume_snapshots = Table(
    "volume_snapshots",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("volume_id", String(36), nullable=False),
    Column("name", String(255)),
    Column("description", Text),
    Column("status", String(30), nullable=False),
    Column("size", Integer, nullable=False),
    Column("project_id", String(255), nullable=False),
    Column("user_id", String(255)),
    Column("held_by", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "volume_id"),
    Index(None, "created_at"),
    Index(None, "project_id"),
)

servers = Table(
    "servers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255)),
    Column("status", String(30), nullable=False),
    Column("availability_zone", String(255), nullable=False),
    Column("image_id", String(36)),
    Column("volume_id", String(36)),  # booted from this volume (else from its own disk)
    Column("fault", Text),
    Column("image_source", NullableJSON),  # how the image reached the zone: local/copied/...
    Column("project_id", String(255), nullable=False),
    Column("user_id", String(255)),
    Column("held_by", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "created_at"),
    Index(None, "project_id"),
)

backups = Table(
    "backups",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("volume_id", String(36), nullable=False),
    Column("name", String(255)),
    Column("status", String(30), nullable=False),
    Column("size", Integer, nullable=False),
    Column("availability_zone", String(255), nullable=False),  # where the backup lives
    Column("base", String(255), nullable=False),  # block image in the backups pool
    Column("is_incremental", Boolean, nullable=False),
    Column("source_snap", String(255), nullable=False),  # the volume's snapshot it was read at
    Column("moved", BigInteger, nullable=False),  # bytes read from the volume
    Column("project_id", String(255), nullable=False),
    Column("user_id", String(255)),
    Column("held_by", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "volume_id"),
    Index(None, "created_at"),
    Index(None, "project_id"),
)

# --- who is alive: server processes (holders) and named leases ------------------------------

holders = Table(
    "holders",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("site", String(255), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),  # renewed by the holder's heartbeat
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(255), primary_key=True),  # e.g. "reconcile:central"
    Column("holder", String(255), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# --- metadata definitions (Glance's metadefs): namespaces of property, object and tag
# definitions, and the resource types (OS::Glance::Image, ...) each namespace applies to -----

metadef_namespaces = Table(
    "metadef_namespaces",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("namespace", String(80), nullable=False, unique=True),
    Column("display_name", String(80)),
    Column("description", Text),
    Column("visibility", String(32), nullable=False),  # public, private
    Column("protected", Boolean, nullable=False),
    Column("owner", String(255), nullable=False),  # a project id
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "owner"),
)

metadef_resource_types = Table(
    "metadef_resource_types",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(80), nullable=False, unique=True),
    Column("protected", Boolean, nullable=False),  # the standard ones
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Which resource types a namespace applies to (Glance's metadef_namespace_resource_types).
metadef_associations = Table(
    "metadef_associations",
    metadata,
    Column(
        "namespace_id",
        Integer,
        ForeignKey("metadef_namespaces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("resource_type_id", Integer, ForeignKey("metadef_resource_types.id"), primary_key=True),
    Column("prefix", String(80)),  # e.g. "hw_": how the properties are named on the resource
    Column("properties_target", String(80)),  # e.g. "image": which of its metadata they go in
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "resource_type_id"),
)


def _definitions(name: str, *columns: Column[Any]) -> Table:
    """A table of one kind of a namespace's definitions, named uniquely in the namespace."""
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column(
            "namespace_id",
            Integer,
            ForeignKey("metadef_namespaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("name", String(255), nullable=False),
        *columns,
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        UniqueConstraint("namespace_id", "name"),
    )


metadef_objects = _definitions(
    "metadef_objects",
    Column("description", Text),
    Column("required", NullableJSON),  # names of its properties an object must have
    Column("json_schema", NullableJSON, nullable=False),  # its properties: name -> schema
)
metadef_properties = _definitions(
    "metadef_properties",
    Column("json_schema", NullableJSON, nullable=False),  # the property's schema, sans name
)
metadef_tags = _definitions("metadef_tags")
