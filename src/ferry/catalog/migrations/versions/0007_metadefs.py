"""Metadata definitions (Glance's metadefs), and ferry's standard namespaces loaded once.

The standard namespaces (``migrations/metadefs/*.json``, Glance's metadef file format) are
loaded here rather than at each start: a migration runs once per catalogue, under the
migration lock, so several sites starting together never load them twice, and a namespace an
operator deleted stays deleted. A later ferry that ships more or changed definitions adds a
migration that loads those (as an operator reruns ``glance-manage db_load_metadefs``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types: a migration must not change when schema.py does.
_TIME = sa.DateTime(timezone=True)
_JSON = sa.JSON(none_as_null=True)
STANDARD = Path(__file__).parent.parent / "metadefs"
# The standard namespaces belong to the noauth project (config.NOAUTH_PROJECT); public, so
# every project sees them, and only an admin changes them.
NOAUTH_PROJECT = "c0ffee00c0ffee00c0ffee00c0ffee00"
RESOURCE_TYPES = ("OS::Glance::Image", "OS::Cinder::Volume", "OS::Nova::Flavor", "OS::Nova::Server")


def _stamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    ]


def _definitions(table: str, *columns: sa.Column[Any]) -> None:
    op.create_table(
        table,
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("namespace_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        *columns,
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["metadef_namespaces.id"],
            ondelete="CASCADE",
            name=f"fk_{table}_namespace_id_metadef_namespaces",
        ),
        sa.UniqueConstraint("namespace_id", "name", name=f"uq_{table}_namespace_id_name"),
    )


def upgrade() -> None:
    """Create the six tables, then load the standard resource types and namespaces."""
    op.create_table(
        "metadef_namespaces",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(80), nullable=False),
        sa.Column("display_name", sa.String(80)),
        sa.Column("description", sa.Text),
        sa.Column("visibility", sa.String(32), nullable=False),
        sa.Column("protected", sa.Boolean, nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name="pk_metadef_namespaces"),
        sa.UniqueConstraint("namespace", name="uq_metadef_namespaces_namespace"),
    )
    op.create_index("ix_metadef_namespaces_owner", "metadef_namespaces", ["owner"])
    op.create_table(
        "metadef_resource_types",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("protected", sa.Boolean, nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name="pk_metadef_resource_types"),
        sa.UniqueConstraint("name", name="uq_metadef_resource_types_name"),
    )
    op.create_table(
        "metadef_associations",
        sa.Column("namespace_id", sa.Integer, nullable=False),
        sa.Column("resource_type_id", sa.Integer, nullable=False),
        sa.Column("prefix", sa.String(80)),
        sa.Column("properties_target", sa.String(80)),
        *_stamps(),
        sa.PrimaryKeyConstraint("namespace_id", "resource_type_id", name="pk_metadef_associations"),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["metadef_namespaces.id"],
            ondelete="CASCADE",
            name="fk_metadef_associations_namespace_id_metadef_namespaces",
        ),
        sa.ForeignKeyConstraint(
            ["resource_type_id"],
            ["metadef_resource_types.id"],
            name="fk_metadef_associations_resource_type_id_metadef_resource_types",
        ),
    )
    op.create_index(
        "ix_metadef_associations_resource_type_id", "metadef_associations", ["resource_type_id"]
    )
    _definitions(
        "metadef_objects",
        sa.Column("description", sa.Text),
        sa.Column("required", _JSON),
        sa.Column("json_schema", _JSON, nullable=False),
    )
    _definitions("metadef_properties", sa.Column("json_schema", _JSON, nullable=False))
    _definitions("metadef_tags")
    _load_standard(op.get_bind())


def downgrade() -> None:
    """Drop them again (children first)."""
    for table in ("metadef_tags", "metadef_properties", "metadef_objects"):
        op.drop_table(table)
    op.drop_index("ix_metadef_associations_resource_type_id", table_name="metadef_associations")
    op.drop_table("metadef_associations")
    op.drop_table("metadef_resource_types")
    op.drop_index("ix_metadef_namespaces_owner", table_name="metadef_namespaces")
    op.drop_table("metadef_namespaces")


# Frozen table shapes for the load: not schema.py's, which may change after this migration.
def _table(name: str, *columns: str, **typed: Any) -> sa.TableClause:
    cols = [sa.column(c) for c in columns] + [sa.column(c, t) for c, t in typed.items()]
    return sa.table(name, *cols, sa.column("created_at", _TIME), sa.column("updated_at", _TIME))


_NS = _table("metadef_namespaces", "id", "namespace", "display_name", "description",
             "visibility", "protected", "owner")  # fmt: skip
_RT = _table("metadef_resource_types", "id", "name", "protected")
_AS = _table("metadef_associations", "namespace_id", "resource_type_id", "prefix",
             "properties_target")  # fmt: skip
_OBJ = _table("metadef_objects", "namespace_id", "name", "description", required=_JSON,
              json_schema=_JSON)  # fmt: skip
_PROP = _table("metadef_properties", "namespace_id", "name", json_schema=_JSON)
_TAG = _table("metadef_tags", "namespace_id", "name")


def _load_standard(conn: sa.Connection) -> None:
    """Insert the standard resource types, then each standard namespace and its contents."""
    now = datetime.now(UTC)
    if conn.dialect.name == "sqlite":  # as the catalogue's UTCDateTime stores it there
        now = now.replace(tzinfo=None)
    stamps = {"created_at": now, "updated_at": now}
    types: dict[str, int] = {}
    for name in RESOURCE_TYPES:
        types[name] = _insert(conn, _RT, name=name, protected=True, **stamps)
    for path in sorted(STANDARD.glob("*.json")):
        doc = json.loads(path.read_text())
        ns_id = _insert(
            conn, _NS, namespace=doc["namespace"], display_name=doc.get("display_name"),
            description=doc.get("description"), visibility=doc.get("visibility", "private"),
            protected=bool(doc.get("protected", False)), owner=NOAUTH_PROJECT, **stamps,
        )  # fmt: skip
        for assoc in doc.get("resource_type_associations", []):
            if assoc["name"] not in types:
                types[assoc["name"]] = _insert(
                    conn, _RT, name=assoc["name"], protected=False, **stamps
                )
            conn.execute(
                _AS.insert().values(
                    namespace_id=ns_id, resource_type_id=types[assoc["name"]],
                    prefix=assoc.get("prefix"), properties_target=assoc.get("properties_target"),
                    **stamps,
                )
            )  # fmt: skip
        owned = {"namespace_id": ns_id, **stamps}
        for name, schema in doc.get("properties", {}).items():
            conn.execute(_PROP.insert().values(name=name, json_schema=schema, **owned))
        for obj in doc.get("objects", []):
            conn.execute(
                _OBJ.insert().values(
                    name=obj["name"], description=obj.get("description"),
                    required=obj.get("required"), json_schema=obj.get("properties", {}), **owned,
                )
            )  # fmt: skip
        for tag in doc.get("tags", []):
            conn.execute(_TAG.insert().values(name=tag["name"], **owned))


def _insert(conn: sa.Connection, table: sa.TableClause, **values: Any) -> int:
    """Insert one row and return its new id."""
    new_id = conn.execute(table.insert().values(**values).returning(table.c.id)).scalar_one()
    return int(new_id)
