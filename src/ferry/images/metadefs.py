"""Metadata definitions (Glance's metadefs) with Glance's rules: who sees which namespace, who
may change it, what a protected namespace refuses, and the schemas bodies must match.

Visibility and policy follow Glance's MetadefAPIPolicy: a private namespace exists only for its
owner's project and admins (everyone else gets 404, never 403), and a refused action on a
namespace the caller may see is 403, on one it may not see 404. Policy targets are
``{"project_id": namespace owner, "visibility": ...}``, or the caller's own project when the
action is not on one namespace.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

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
from ferry.catalog.metadefs import Metadefs
from ferry.errors import Forbidden, InvalidRequest, NotFound
from ferry.identity import Context
from ferry.identity.policy import Policy

GET_NAMESPACE = "get_metadef_namespace"
_ITEMS = {"namespace": "namespace", "object": "object", "property": "property", "tag": "tag",
          "resource_type": "resource-type"}  # fmt: skip
_COLLECTIONS = {"namespaces": "namespace", "objects": "object", "properties": "property",
                "tags": "tag", "resource_types": "resource_type"}  # fmt: skip
SCHEMAS = frozenset(_ITEMS) | frozenset(_COLLECTIONS)


@dataclass(frozen=True)
class Kind:
    """One kind of definition: its record type, Glance's policy actions and words for it."""

    record: type[Definition]
    word: str
    get: str
    list: str
    add: str
    modify: str
    delete: str


OBJECTS = Kind(
    ObjectRecord,
    "object",
    "get_metadef_object",
    "get_metadef_objects",
    "add_metadef_object",
    "modify_metadef_object",
    "delete_metadef_object",
)
PROPERTIES = Kind(
    PropertyRecord,
    "property",
    "get_metadef_property",
    "get_metadef_properties",
    "add_metadef_property",
    "modify_metadef_property",
    "remove_metadef_property",
)
TAGS = Kind(TagRecord, "tag", "get_metadef_tag", "get_metadef_tags", "add_metadef_tag",
            "modify_metadef_tag", "delete_metadef_tag")  # fmt: skip


@cache
def _schema(name: str) -> dict[str, Any]:
    if name in _ITEMS:
        text = resources.files("ferry.images").joinpath(f"schemas/metadefs-{_ITEMS[name]}.json")
        loaded: dict[str, Any] = json.loads(text.read_text())
        return loaded
    item = copy.deepcopy(_schema(_COLLECTIONS[name]))
    definitions = item.pop("definitions", None)
    if name == "properties":  # a property's name is its key in the collection
        item["required"] = [key for key in item["required"] if key != "name"]
        listed = {"type": "object", "additionalProperties": item}
    else:
        listed = {"type": "array", "items": item}
    title = "resource_type_associations" if name == "resource_types" else name
    doc: dict[str, Any] = {
        "name": title,
        "properties": {title: listed, "first": {"type": "string"}, "next": {"type": "string"},
                       "schema": {"type": "string"}},
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}],
    }  # fmt: skip
    if definitions:
        doc["definitions"] = definitions
    return doc


def schema(name: str) -> dict[str, Any]:
    """Glance's schema ``/v2/schemas/metadefs/<name>`` (NotFound for other names)."""
    if name not in SCHEMAS:
        raise NotFound(f"No metadefs schema named {name}")
    return copy.deepcopy(_schema(name))


# The body of a bulk tag create (Glance's "tags" schema for lists, not the collection's).
_TAGS_BODY = {
    "name": "tags",
    "properties": {"tags": {"type": "array", "items": {
        "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
        "additionalProperties": False}}},
    "additionalProperties": False,
}  # fmt: skip


def check(
    name: str,
    body: Any,
    read_only: Sequence[str] = ("created_at", "updated_at"),
    against: Mapping[str, Any] | None = None,
) -> Any:
    """Glance's request checks: a body, no read-only attribute (403), the schema (400)."""
    if body is None:
        raise InvalidRequest("Body expected in request.")
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    for key in read_only:
        if key in body:
            raise Forbidden(f"Attribute '{key}' is read-only.")
    try:
        jsonschema.Draft4Validator(against or _schema(name)).validate(body)
    except jsonschema.ValidationError as exc:
        raise InvalidRequest(f"Provided object does not match schema '{name}': {exc}") from exc
    return body


_OWN_READ_ONLY = ("self", "schema", "created_at", "updated_at")


class MetadefService:
    """The metadefs API's operations for a caller (``ctx``), over one catalogue."""

    def __init__(self, store: Metadefs, policy: Policy) -> None:
        self.store = store
        self.policy = policy

    # --- authorization ---------------------------------------------------------------------
    def _allow(self, ctx: Context, action: str, ns: NamespaceRecord | None = None) -> None:
        """Glance's MetadefAPIPolicy: 403, or 404 when the caller may not see the namespace."""
        if ns is None:
            target: dict[str, Any] = {"project_id": ctx.project_id}
        else:
            target = {"project_id": ns.owner, "visibility": ns.visibility}
        if self.policy.check(ctx, action, target):
            return
        if action == GET_NAMESPACE or not self.policy.check(ctx, GET_NAMESPACE, target):
            name = ns.namespace if ns else ""
            raise NotFound(f"Metadata definition namespace={name} was not found.")
        raise Forbidden(f"You are not authorized to complete {action} action.")

    def _visible(self, ctx: Context, name: str) -> NamespaceRecord:
        """The namespace, if the caller may see it (Glance's _is_namespace_visible)."""
        ns = self.store.namespace(name)
        if ctx.can_see_all() or ns.visibility == "public" or ns.owner == ctx.project_id:
            return ns
        raise NotFound(f"Metadata definition namespace={name} was not found.")

    def _writable(self, ctx: Context, name: str, *actions: str) -> NamespaceRecord:
        ns = self._visible(ctx, name)
        for action in actions:
            self._allow(ctx, action, ns)
        return ns

    # --- namespaces ------------------------------------------------------------------------
    def list_namespaces(self, ctx: Context, query: NamespaceQuery) -> list[NamespaceRecord]:
        self._allow(ctx, "get_metadef_namespaces")
        self._allow(ctx, "list_metadef_resource_types")
        query = replace(query, project=ctx.project_id, sees_all=ctx.can_see_all())
        found = self.store.namespaces(query)
        return [ns for ns in found if self.policy.check(ctx, GET_NAMESPACE, _target(ns))]

    def associations_of(self, names: Sequence[str]) -> dict[str, list[AssociationRecord]]:
        return self.store.associations(names)

    def get_namespace(
        self, ctx: Context, name: str, resource_type: str | None = None
    ) -> tuple[NamespaceRecord, Contents]:
        """A namespace and its contents; with ``resource_type``, names carry that type's
        prefix (as they are set on a resource of that type)."""
        ns = self._visible(ctx, name)
        self._allow(ctx, GET_NAMESPACE, ns)
        for action in ("list_metadef_resource_types", OBJECTS.list, PROPERTIES.list, TAGS.list):
            self._allow(ctx, action, ns)
        contents = self.store.contents(name)
        prefix = next((a.prefix for a in contents.associations if a.name == resource_type), None)
        if prefix:
            contents = _prefixed(contents, prefix)
        return ns, contents

    def create_namespace(self, ctx: Context, body: Any) -> tuple[NamespaceRecord, Contents]:
        doc = check("namespace", body, _OWN_READ_ONLY)
        self._allow(ctx, "add_metadef_namespace")
        for key, action in (
            ("resource_type_associations", "add_metadef_resource_type_association"),
            ("objects", OBJECTS.add), ("properties", PROPERTIES.add), ("tags", TAGS.add),
        ):  # fmt: skip
            if doc.get(key):
                self._allow(ctx, action)
        contents = Contents(
            associations=[_association(a) for a in doc.get("resource_type_associations", [])],
            objects=[_object(o) for o in doc.get("objects", [])],
            properties=[_property(k, v) for k, v in doc.get("properties", {}).items()],
            tags=[TagRecord(_named(t, "tag")) for t in doc.get("tags", [])],
        )
        ns = self.store.create_namespace(_namespace(ctx, doc), contents)
        return ns, self.store.contents(ns.namespace)

    def update_namespace(self, ctx: Context, name: str, body: Any) -> NamespaceRecord:
        """Replace the namespace's own fields; left out ones go back to their defaults."""
        doc = check("namespace", body, _OWN_READ_ONLY)
        self._writable(ctx, name, "modify_metadef_namespace")
        return self.store.update_namespace(name, _namespace(ctx, doc))

    def delete_namespace(self, ctx: Context, name: str) -> None:
        ns = self._writable(ctx, name, "delete_metadef_namespace")
        _unprotected(ns, "namespace", name)
        self.store.delete_namespace(name)

    def clear(self, ctx: Context, kind: Kind, name: str) -> None:
        """Remove every object, property or tag of an unprotected namespace."""
        actions = ["delete_metadef_namespace"] + (["delete_metadef_tags"] if kind is TAGS else [])
        ns = self._writable(ctx, name, *actions)
        _unprotected(ns, "namespace", name)
        self.store.clear(kind.record, name)

    # --- resource types --------------------------------------------------------------------
    def resource_types(self, ctx: Context) -> list[ResourceTypeRecord]:
        self._allow(ctx, "list_metadef_resource_types")
        return self.store.resource_types()

    def associations(self, ctx: Context, name: str) -> list[AssociationRecord]:
        ns = self._writable(ctx, name, "list_metadef_resource_types")
        if not self.policy.check(ctx, "get_metadef_resource_type", _target(ns)):
            return []
        return self.store.associations([name]).get(name, [])

    def associate(self, ctx: Context, name: str, body: Any) -> AssociationRecord:
        doc = check("resource_type", body)
        self._writable(ctx, name, "add_metadef_resource_type_association")
        return self.store.associate(name, _association(doc))

    def dissociate(self, ctx: Context, name: str, type_name: str) -> None:
        ns = self._writable(ctx, name, "remove_metadef_resource_type_association")
        if not any(a.name == type_name for a in self.store.associations([name]).get(name, [])):
            raise NotFound(f"Failed to find resource type {type_name} to delete")
        _unprotected(ns, "resource-type-association", type_name)
        self.store.dissociate(name, type_name)

    # --- objects, properties, tags ---------------------------------------------------------
    def definitions(
        self, ctx: Context, kind: Kind, name: str, sort: tuple[str, str] = ("created_at", "desc"),
        marker: str | None = None, limit: int | None = None,
    ) -> list[Any]:  # fmt: skip
        ns = self._writable(ctx, name, kind.list)
        found = self.store.definitions(kind.record, name, sort, marker, limit)
        return found if self.policy.check(ctx, kind.get, _target(ns)) else []

    def definition(self, ctx: Context, kind: Kind, name: str, item: str) -> Any:
        self._writable(ctx, name, kind.get)
        return self.store.definition(kind.record, name, item)

    def property_for(self, ctx: Context, name: str, item: str, resource_type: str) -> Any:
        """A property as a resource of ``resource_type`` names it (with that type's prefix)."""
        ns = self._writable(ctx, name, PROPERTIES.get, "get_metadef_resource_type")
        assoc = next((a for a in self.associations(ctx, name) if a.name == resource_type), None)
        if assoc is None:
            raise NotFound(
                "The metadata definition resource-type association of resource-type="
                f"{resource_type} to namespace={ns.namespace}, was not found."
            )
        if not assoc.prefix or not item.startswith(assoc.prefix):
            raise NotFound(f"Property {item} does not start with the expected resource type "
                           f"association prefix of '{assoc.prefix}'.")  # fmt: skip
        return self.store.definition(PropertyRecord, name, item.removeprefix(assoc.prefix))

    def add(self, ctx: Context, kind: Kind, name: str, body: Any) -> Any:
        item = _definition(kind, body)
        self._writable(ctx, name, kind.add)
        return self.store.add(name, item)

    def change(self, ctx: Context, kind: Kind, name: str, old: str, body: Any) -> Any:
        item = _definition(kind, body)
        self._writable(ctx, name, kind.modify)
        return self.store.replace(name, old, item)

    def remove(self, ctx: Context, kind: Kind, name: str, item: str) -> None:
        ns = self._writable(ctx, name, kind.delete)
        self.store.definition(kind.record, name, item)  # 404 before 403, as Glance
        _unprotected(ns, kind.word, item)
        self.store.remove(kind.record, name, item)

    def add_tag(self, ctx: Context, name: str, tag: str) -> TagRecord:
        self._visible(ctx, name)
        return self.add(ctx, TAGS, name, {"name": tag})  # type: ignore[no-any-return]

    def set_tags(self, ctx: Context, name: str, body: Any, *, append: bool) -> list[TagRecord]:
        """Replace the namespace's tags with these (or add them, ``append``)."""
        doc = check("tags", body, against=_TAGS_BODY)
        tags = [TagRecord(_named(t, "tag")) for t in doc.get("tags", [])]
        self._writable(ctx, name, "add_metadef_tags")
        return self.store.set_tags(name, tags, append=append)


def _target(ns: NamespaceRecord) -> dict[str, Any]:
    return {"project_id": ns.owner, "visibility": ns.visibility}


def _unprotected(ns: NamespaceRecord, word: str, name: str) -> None:
    if ns.protected:
        raise Forbidden(f"Metadata definition {word} {name} is protected and cannot be deleted.")


def _namespace(ctx: Context, doc: Mapping[str, Any]) -> NamespaceRecord:
    owner = doc.get("owner") or ctx.project_id
    if owner is None:
        raise InvalidRequest("A namespace needs an owner: give one, or ask as a project")
    return NamespaceRecord(
        namespace=doc["namespace"],
        owner=owner,
        display_name=doc.get("display_name"),
        description=doc.get("description"),
        visibility=doc.get("visibility") or "private",
        protected=bool(doc.get("protected", False)),
    )


def _named(doc: Mapping[str, Any], what: str) -> str:
    name = doc.get("name")
    if not isinstance(name, str):
        raise InvalidRequest(f"Every {what} needs a name")
    return name


def _association(doc: Mapping[str, Any]) -> AssociationRecord:
    return AssociationRecord(
        _named(doc, "resource type association"), doc.get("prefix"), doc.get("properties_target")
    )


def _property(name: str, doc: Mapping[str, Any]) -> PropertyRecord:
    return PropertyRecord(name, {k: v for k, v in doc.items() if k != "name"})


def _object(doc: Mapping[str, Any]) -> ObjectRecord:
    return ObjectRecord(
        _named(doc, "object"), doc.get("description"), doc.get("required"),
        {k: {p: v for p, v in prop.items() if p != "name"}
         for k, prop in doc.get("properties", {}).items()},
    )  # fmt: skip


def _definition(kind: Kind, body: Any) -> Definition:
    """The record a create or update body describes, checked as Glance checks it."""
    doc = check(kind.word, body)
    if kind is TAGS:
        return TagRecord(doc["name"])
    if kind is PROPERTIES:
        return _property(doc["name"], doc)
    for prop in doc.get("properties", {}).values():
        check("property", {"name": "-", **prop})  # each as a property, as Glance's create
    return _object(doc)


def _prefixed(contents: Contents, prefix: str) -> Contents:
    """Contents as a resource with this prefix names them (Glance's _prefix_property_name)."""
    objects = [
        replace(o, properties={prefix + k: v for k, v in o.properties.items()},
                required=[prefix + r for r in o.required] if o.required else o.required)
        for o in contents.objects
    ]  # fmt: skip
    properties = [replace(p, name=prefix + p.name) for p in contents.properties]
    return replace(contents, objects=objects, properties=properties)
