"""Owners of unfinished work: holders (live server processes), leases, and ``held_by``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)
OWNED = ("images", "volumes", "volume_snapshots", "servers", "backups")


def upgrade() -> None:
    """Add the holders and leases tables and a ``held_by`` column to every record table."""
    op.create_table(
        "holders",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("site", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_holders"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )
    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("held_by", sa.String(255)))


def downgrade() -> None:
    """Drop them again."""
    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("held_by")
    op.drop_table("leases")
    op.drop_table("holders")
