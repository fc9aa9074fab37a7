"""Every volume, snapshot, server and backup belongs to a project (and was made by a user).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCOPED = ("volumes", "volume_snapshots", "servers", "backups")
# Records made before identity existed belong to the noauth project (config.NOAUTH_PROJECT).
NOAUTH_PROJECT = "c0ffee00c0ffee00c0ffee00c0ffee00"


def upgrade() -> None:
    """Add ``project_id`` (indexed) and ``user_id``; earlier rows go to the noauth project."""
    for table in SCOPED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column(
                    "project_id", sa.String(255), nullable=False, server_default=NOAUTH_PROJECT
                )
            )
            batch.add_column(sa.Column("user_id", sa.String(255)))
            batch.create_index(f"ix_{table}_project_id", ["project_id"])


def downgrade() -> None:
    """Drop them again."""
    for table in SCOPED:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_project_id")
            batch.drop_column("user_id")
            batch.drop_column("project_id")
