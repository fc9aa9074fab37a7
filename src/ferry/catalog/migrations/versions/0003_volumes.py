"""Volumes, volume snapshots, servers (instances' disks) and backups.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types: a migration must not change when schema.py does.
_TIME = sa.DateTime(timezone=True)
_JSON = sa.JSON(none_as_null=True)


def _common(table: str) -> list[Any]:
    return [
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
    ]


def upgrade() -> None:
    """Create the four tables and their indexes."""
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("description", sa.Text),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("availability_zone", sa.String(255), nullable=False),
        sa.Column("bootable", sa.Boolean, nullable=False),
        sa.Column("source", _JSON, nullable=False),
        sa.Column("volume_image_metadata", _JSON),
        sa.Column("attached_to", sa.String(36)),
        *_common("volumes"),
    )
    op.create_table(
        "volume_snapshots",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("volume_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("description", sa.Text),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        *_common("volume_snapshots"),
    )
    op.create_table(
        "servers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("availability_zone", sa.String(255), nullable=False),
        sa.Column("image_id", sa.String(36)),
        sa.Column("volume_id", sa.String(36)),
        sa.Column("fault", sa.Text),
        sa.Column("image_source", _JSON),
        *_common("servers"),
    )
    op.create_table(
        "backups",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("volume_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("availability_zone", sa.String(255), nullable=False),
        sa.Column("base", sa.String(255), nullable=False),
        sa.Column("is_incremental", sa.Boolean, nullable=False),
        sa.Column("source_snap", sa.String(255), nullable=False),
        sa.Column("moved", sa.BigInteger, nullable=False),
        *_common("backups"),
    )
    for table, columns in INDEXES:
        for column in columns:
            op.create_index(f"ix_{table}_{column}", table, [column])


INDEXES = (
    ("volumes", ("availability_zone", "created_at")),
    ("volume_snapshots", ("volume_id", "created_at")),
    ("servers", ("created_at",)),
    ("backups", ("volume_id", "created_at")),
)


def downgrade() -> None:
    """Drop them."""
    for table in ("backups", "servers", "volume_snapshots", "volumes"):
        op.drop_table(table)
