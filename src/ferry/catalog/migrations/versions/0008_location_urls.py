"""Several locations of one image in one store: image_locations keyed by (image, position).

Glance's http store holds as many URLs of an image as clients add (Tempest adds
``<url>`` and ``<url>#new``); the old key, (image_id, store), allowed one. Positions are
already unique per image (each new row takes the image's highest plus one, under the image
row's lock), so the new key holds for every existing row. A block store still keeps one
location per image: the catalogue replaces that row rather than adding one.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Key image_locations by (image_id, position) instead of (image_id, store)."""
    with op.batch_alter_table("image_locations") as batch:
        batch.drop_constraint("pk_image_locations", type_="primary")
        batch.create_primary_key("pk_image_locations", ["image_id", "position"])


def downgrade() -> None:
    """Back to (image_id, store): an image's extra URLs in a store are dropped first."""
    op.execute(
        "DELETE FROM image_locations WHERE EXISTS (SELECT 1 FROM image_locations AS o"
        " WHERE o.image_id = image_locations.image_id AND o.store = image_locations.store"
        " AND o.position < image_locations.position)"
    )
    with op.batch_alter_table("image_locations") as batch:
        batch.drop_constraint("pk_image_locations", type_="primary")
        batch.create_primary_key("pk_image_locations", ["image_id", "store"])
