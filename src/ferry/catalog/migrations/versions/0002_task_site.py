"""Tasks name the site whose workers run them (the stores a job touches are that site's).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add tasks.site and the index workers claim by."""
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("site", sa.String(255)))
    op.create_index("ix_tasks_site_status", "tasks", ["site", "status"])


def downgrade() -> None:
    """Drop tasks.site."""
    op.drop_index("ix_tasks_site_status", "tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("site")
