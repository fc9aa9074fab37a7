"""Image members: the projects a shared image is shared with, and each one's answer.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the type: a migration must not change when schema.py does.
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create ``image_members`` (one row per image and project), indexed by project."""
    op.create_table(
        "image_members",
        sa.Column("image_id", sa.String(36), nullable=False),
        sa.Column("member_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("image_id", "member_id", name="pk_image_members"),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], ondelete="CASCADE", name="fk_image_members_image_id_images"
        ),
    )
    op.create_index("ix_image_members_member_id", "image_members", ["member_id"])


def downgrade() -> None:
    """Drop it again."""
    op.drop_index("ix_image_members_member_id", table_name="image_members")
    op.drop_table("image_members")
