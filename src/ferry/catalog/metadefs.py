"""Metadata definitions (Glance's metadefs): namespaces, the resource types they apply to, and
the objects, properties and tags they define.

This module only stores them; who may see or change which namespace is the service's business
(``images/metadefs.py``). Namespaces are addressed by their unique name, definitions by their
name within a namespace; every call is one transaction, so a namespace created with its
contents, or tags replaced in bulk, are all there or not at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy.exc
from sqlalchemy import Connection, Row, Table, delete, insert, or_, select, update

from ferry.catalog import listing
from ferry.catalog.metadef_records import (
    AssociationRecord,
    Contents,
    Definition,
    NamespaceQuery,
    NamespaceRecord,
    ObjectRecord,
    PropertyRecord,
    ResourceTypeRecord,
    TagRecord,
)
from ferry.catalog.schema import (
    metadef_associations,
    metadef_namespaces,
    metadef_objects,
    metadef_properties,
    metadef_resource_types,
    metadef_tags,
)
from ferry.errors import AlreadyExists, InvalidRequest, NotFound

if TYPE_CHECKING:
    from ferry.catalog.catalog import Catalog

NS, RT, ASSOC = metadef_namespaces, metadef_resource_types, metadef_associations
NAMESPACE_SORT_KEYS = frozenset({"created_at", "updated_at", "namespace", "display_name", "id",
                                 "visibility", "protected", "owner"})  # fmt: skip
DEFINITION_SORT_KEYS = frozenset({"created_at", "updated_at", "name", "id"})


@dataclass(frozen=True)
class _Kind:
    table: Table
    word: str  # as Glance's messages name it

    def missing(self, name: str, ns: str) -> NotFound:
        return NotFound(f"The metadata definition {self.word} with name={name} was not found "
                        f"in namespace={ns}.")  # fmt: skip

    def taken(self, name: str, ns: str) -> AlreadyExists:
        if self.word == "tag":  # Glance's words (its MySQL compares tag names caselessly)
            return AlreadyExists(f"A metadata tag with name={name} already exists in namespace="
                                 f"{ns}. (Please note that metadata tag names are case "
                                 "insensitive).")  # fmt: skip
        return AlreadyExists(f"A metadata definition {self.word} with name={name} already "
                             f"exists in namespace={ns}.")  # fmt: skip


KINDS: dict[type[Any], _Kind] = {
    ObjectRecord: _Kind(metadef_objects, "object"),
    PropertyRecord: _Kind(metadef_properties, "property"),
    TagRecord: _Kind(metadef_tags, "tag"),
}


class Metadefs:
    """The metadata definitions of one catalogue; thread-safe."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def _read(self) -> AbstractContextManager[Connection]:
        return self._catalog._transaction(write=False)

    def _write(self) -> AbstractContextManager[Connection]:
        return self._catalog._transaction(write=True)

    # --- namespaces ------------------------------------------------------------------------
    def namespace(self, name: str) -> NamespaceRecord:
        with self._read() as conn:
            return _namespace(_namespace_row(conn, name))

    def namespaces(self, query: NamespaceQuery) -> list[NamespaceRecord]:
        """The namespaces the query selects, in its order."""
        order = _order(NS, (query.sort_key, query.sort_dir), NAMESPACE_SORT_KEYS)
        stmt = select(NS)
        if not query.sees_all:
            stmt = stmt.where(or_(NS.c.owner == query.project, NS.c.visibility == "public"))
        if query.visibility is not None:
            stmt = stmt.where(NS.c.visibility == query.visibility)
        if query.resource_types:
            typed = (select(ASSOC.c.namespace_id).join(RT, RT.c.id == ASSOC.c.resource_type_id)
                     .where(RT.c.name.in_(list(query.resource_types))))  # fmt: skip
            stmt = stmt.where(NS.c.id.in_(typed))
        with self._read() as conn:
            after = None
            if query.marker is not None:
                row = _namespace_row(conn, query.marker)
                after = [row._mapping[column.name] for column, _ in order]
            stmt = listing.page(stmt, order, after)
            if query.limit is not None:
                stmt = stmt.limit(query.limit)
            return [_namespace(row) for row in conn.execute(stmt)]

    def create_namespace(self, ns: NamespaceRecord, contents: Contents) -> NamespaceRecord:
        """Add a namespace with its contents; AlreadyExists if its name (or a definition's
        name within it) is taken."""
        with self._write() as conn:
            try:
                ns_id = conn.execute(insert(NS).values(_values(ns)).returning(NS.c.id)).scalar_one()
            except sqlalchemy.exc.IntegrityError as exc:
                raise AlreadyExists(f"The metadata definition namespace={ns.namespace} already "
                                    "exists.") from exc  # fmt: skip
            for assoc in contents.associations:
                _associate(conn, ns_id, ns.namespace, assoc)
            items: list[Definition] = [*contents.objects, *contents.properties, *contents.tags]
            for item in items:
                _add(conn, ns_id, ns.namespace, item)
            return _namespace(_namespace_row(conn, ns.namespace))

    def update_namespace(self, name: str, changed: NamespaceRecord) -> NamespaceRecord:
        """Replace a namespace's own fields (a new name renames it); its contents stay."""
        values = {k: v for k, v in _values(changed).items() if k != "created_at"}
        with self._write() as conn:
            row = _namespace_row(conn, name)
            try:
                conn.execute(update(NS).where(NS.c.id == row.id).values(values))
            except sqlalchemy.exc.IntegrityError as exc:
                raise AlreadyExists(
                    "Invalid update. It would result in a duplicate metadata definition "
                    f"namespace with the same name of {changed.namespace}"
                ) from exc
            return _namespace(_namespace_row(conn, changed.namespace))

    def delete_namespace(self, name: str) -> None:
        """Remove a namespace and everything it defines."""
        with self._write() as conn:
            ns_id = _namespace_row(conn, name).id
            for table in (metadef_objects, metadef_properties, metadef_tags, ASSOC):
                conn.execute(delete(table).where(table.c.namespace_id == ns_id))
            conn.execute(delete(NS).where(NS.c.id == ns_id))

    def contents(self, name: str) -> Contents:
        """Everything a namespace defines."""
        with self._read() as conn:
            ns_id = _namespace_row(conn, name).id
            return Contents(
                _associations(conn, [ns_id])[ns_id], _all(conn, ObjectRecord, ns_id),
                _all(conn, PropertyRecord, ns_id), _all(conn, TagRecord, ns_id),
            )  # fmt: skip

    # --- resource types and associations ---------------------------------------------------
    def resource_types(self) -> list[ResourceTypeRecord]:
        """Every resource type, oldest first."""
        with self._read() as conn:
            rows = conn.execute(select(RT).order_by(RT.c.id))
            return [ResourceTypeRecord(name=r.name, **_stamps(r)) for r in rows]

    def associations(self, names: Iterable[str]) -> dict[str, list[AssociationRecord]]:
        """The resource type associations of these namespaces, by namespace name."""
        with self._read() as conn:
            stmt = select(NS.c.id, NS.c.namespace).where(NS.c.namespace.in_(list(names)))
            ids = {row.id: row.namespace for row in conn.execute(stmt)}
            found = _associations(conn, list(ids))
            return {ids[ns_id]: found[ns_id] for ns_id in ids}

    def associate(self, name: str, assoc: AssociationRecord) -> AssociationRecord:
        """Associate a namespace with a resource type, adding the type if it is new."""
        with self._write() as conn:
            _associate(conn, _namespace_row(conn, name).id, name, assoc)
            return assoc

    def dissociate(self, name: str, type_name: str) -> None:
        with self._write() as conn:
            ns_id = _namespace_row(conn, name).id
            type_id = select(RT.c.id).where(RT.c.name == type_name).scalar_subquery()
            gone = conn.execute(delete(ASSOC).where(
                ASSOC.c.namespace_id == ns_id, ASSOC.c.resource_type_id == type_id))  # fmt: skip
            if gone.rowcount == 0:
                raise NotFound(f"Failed to find resource type {type_name} to delete")

    # --- objects, properties and tags ------------------------------------------------------
    def definition(self, kind: type[Definition], name: str, item: str) -> Any:
        """One object, property or tag of a namespace."""
        with self._read() as conn:
            return _definition(kind, _definition_row(conn, kind, name, item))

    def definitions(
        self,
        kind: type[Definition],
        name: str,
        sort: tuple[str, str] = ("created_at", "desc"),
        marker: str | None = None,
        limit: int | None = None,
    ) -> list[Any]:
        """A namespace's objects, properties or tags, sorted, paged on from ``marker``."""
        table = KINDS[kind].table
        order = _order(table, sort, DEFINITION_SORT_KEYS)
        with self._read() as conn:
            ns_id = _namespace_row(conn, name).id
            after = None
            if marker is not None:
                row = _definition_row(conn, kind, name, marker)
                after = [row._mapping[column.name] for column, _ in order]
            stmt = listing.page(select(table).where(table.c.namespace_id == ns_id), order, after)
            if limit is not None:
                stmt = stmt.limit(limit)
            return [_definition(kind, row) for row in conn.execute(stmt)]

    def add(self, name: str, item: Definition) -> Any:
        """Add an object, property or tag to a namespace."""
        with self._write() as conn:
            _add(conn, _namespace_row(conn, name).id, name, item)
            return _definition(type(item), _definition_row(conn, type(item), name, item.name))

    def replace(self, name: str, old: str, item: Definition) -> Any:
        """Replace a definition (a new name renames it), keeping its created_at."""
        kind = KINDS[type(item)]
        values = {k: v for k, v in _definition_values(item).items() if k != "created_at"}
        with self._write() as conn:
            row = _definition_row(conn, type(item), name, old)
            try:
                conn.execute(update(kind.table).where(kind.table.c.id == row.id).values(values))
            except sqlalchemy.exc.IntegrityError as exc:
                raise kind.taken(item.name, name) from exc
            return _definition(type(item), _definition_row(conn, type(item), name, item.name))

    def remove(self, kind: type[Definition], name: str, item: str) -> None:
        table = KINDS[kind].table
        with self._write() as conn:
            row = _definition_row(conn, kind, name, item)
            conn.execute(delete(table).where(table.c.id == row.id))

    def clear(self, kind: type[Definition], name: str) -> None:
        """Remove every object, property or tag of a namespace."""
        table = KINDS[kind].table
        with self._write() as conn:
            ns_id = _namespace_row(conn, name).id
            conn.execute(delete(table).where(table.c.namespace_id == ns_id))

    def set_tags(self, name: str, tags: Sequence[TagRecord], *, append: bool) -> list[TagRecord]:
        """Add these tags, replacing the namespace's others unless ``append``; AlreadyExists
        (and nothing changed) if a name repeats or, appending, is already there."""
        with self._write() as conn:
            ns_id = _namespace_row(conn, name).id
            if tags and not append:
                conn.execute(delete(metadef_tags).where(metadef_tags.c.namespace_id == ns_id))
            for tag in tags:
                _add(conn, ns_id, name, tag)
            return list(tags)


# --- helpers (run inside a transaction) ---------------------------------------------------
def _order(table: Table, sort: tuple[str, str], keys: frozenset[str]) -> list[tuple[Any, str]]:
    """Order by the sort key, then created_at and id (Glance's tie-breakers), one direction."""
    key, direction = sort
    if key not in keys:
        raise InvalidRequest(f"Invalid sort key: {key}")
    if direction not in ("asc", "desc"):
        raise InvalidRequest(f"Invalid sort direction: {direction}")
    names = dict.fromkeys((key, "created_at", "id"))
    return [(table.c[name], direction) for name in names]


def _stamps(row: Row[Any]) -> dict[str, datetime]:
    return {"created_at": row.created_at, "updated_at": row.updated_at}


def _namespace_row(conn: Connection, name: str) -> Row[Any]:
    row = conn.execute(select(NS).where(NS.c.namespace == name)).first()
    if row is None:
        raise NotFound(f"Metadata definition namespace={name} was not found.")
    return row


def _namespace(row: Row[Any]) -> NamespaceRecord:
    m = row._mapping
    return NamespaceRecord(**{f: m[f] for f in NamespaceRecord.__dataclass_fields__})


def _values(ns: NamespaceRecord) -> dict[str, Any]:
    return {f: getattr(ns, f) for f in NamespaceRecord.__dataclass_fields__}


def _associations(conn: Connection, ns_ids: list[int]) -> dict[int, list[AssociationRecord]]:
    found: dict[int, list[AssociationRecord]] = defaultdict(list)
    rows = conn.execute(
        select(ASSOC, RT.c.name)
        .join(RT, RT.c.id == ASSOC.c.resource_type_id)
        .where(ASSOC.c.namespace_id.in_(ns_ids))
        .order_by(ASSOC.c.created_at, RT.c.id)
    )
    for r in rows:
        found[r.namespace_id].append(
            AssociationRecord(r.name, r.prefix, r.properties_target, **_stamps(r))
        )
    return found


def _associate(conn: Connection, ns_id: int, name: str, assoc: AssociationRecord) -> None:
    type_id = conn.execute(select(RT.c.id).where(RT.c.name == assoc.name)).scalar()
    if type_id is None:  # as Glance: associating with an unknown type makes it
        made = {"name": assoc.name, "protected": False, "created_at": assoc.created_at,
                "updated_at": assoc.updated_at}  # fmt: skip
        type_id = conn.execute(insert(RT).values(made).returning(RT.c.id)).scalar_one()
    values = {"namespace_id": ns_id, "resource_type_id": type_id, "prefix": assoc.prefix,
              "properties_target": assoc.properties_target, "created_at": assoc.created_at,
              "updated_at": assoc.updated_at}  # fmt: skip
    try:
        conn.execute(insert(ASSOC).values(values))
    except sqlalchemy.exc.IntegrityError as exc:
        raise AlreadyExists(
            f"The metadata definition resource-type association of resource-type={assoc.name} "
            f"to namespace={name} already exists."
        ) from exc


def _all(conn: Connection, kind: type[Definition], ns_id: int) -> list[Any]:
    table = KINDS[kind].table
    stmt = select(table).where(table.c.namespace_id == ns_id).order_by(table.c.id)
    return [_definition(kind, row) for row in conn.execute(stmt)]


def _definition_row(conn: Connection, kind: type[Definition], name: str, item: str) -> Row[Any]:
    table = KINDS[kind].table
    ns_id = _namespace_row(conn, name).id
    row = conn.execute(
        select(table).where(table.c.namespace_id == ns_id, table.c.name == item)
    ).first()
    if row is None:
        raise KINDS[kind].missing(item, name)
    return row


def _definition(kind: type[Definition], row: Row[Any]) -> Any:
    m, stamps = row._mapping, _stamps(row)
    if kind is ObjectRecord:
        return ObjectRecord(m["name"], m["description"], m["required"], m["json_schema"], **stamps)
    if kind is PropertyRecord:
        return PropertyRecord(m["name"], m["json_schema"], **stamps)
    return TagRecord(m["name"], **stamps)


def _definition_values(item: Definition) -> dict[str, Any]:
    values: dict[str, Any] = {"name": item.name, "created_at": item.created_at,
                              "updated_at": item.updated_at}  # fmt: skip
    if isinstance(item, ObjectRecord):
        values |= {"description": item.description, "required": item.required,
                   "json_schema": item.properties}  # fmt: skip
    elif isinstance(item, PropertyRecord):
        values["json_schema"] = item.schema
    return values


def _add(conn: Connection, ns_id: int, name: str, item: Definition) -> None:
    kind = KINDS[type(item)]
    try:
        conn.execute(insert(kind.table).values(namespace_id=ns_id, **_definition_values(item)))
    except sqlalchemy.exc.IntegrityError as exc:
        raise kind.taken(item.name, name) from exc
