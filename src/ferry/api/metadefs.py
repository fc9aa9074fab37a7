"""``/v2/metadefs`` and ``/v2/schemas/metadefs``: Glance's metadata definitions API.

Parse, call one service function, render Glance's JSON: keys sorted, absent values left out
(as Glance's WSME models print them), timestamps to the second.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from ferry.api.auth import context_of
from ferry.api.bodies import json_body
from ferry.api.errors import empty
from ferry.api.render import timestamp
from ferry.catalog.metadef_records import (
    AssociationRecord,
    Contents,
    NamespaceQuery,
    NamespaceRecord,
    ObjectRecord,
    PropertyRecord,
)
from ferry.catalog.metadefs import Metadefs
from ferry.errors import InvalidRequest, NotFound
from ferry.images import metadefs
from ferry.images.metadefs import OBJECTS, PROPERTIES, TAGS, Kind, MetadefService

router = APIRouter(prefix="/v2")
NS_PATH = "/metadefs/namespaces/{namespace}"
KINDS = {"objects": OBJECTS, "properties": PROPERTIES, "tags": TAGS}
LIMIT_DEFAULT, LIMIT_MAX = 25, 1000  # Glance's limit_param_default and api_limit_max
_SERVICE_LOCK = threading.Lock()


def _svc(request: Request) -> MetadefService:
    """The site's metadefs service, made on first use over the site's catalogue."""
    state = request.app.state
    with _SERVICE_LOCK:
        svc: MetadefService | None = getattr(state, "metadefs", None)
        if svc is None:
            svc = MetadefService(Metadefs(state.images.catalog), state.policy)
            state.metadefs = svc
    return svc


# --- rendering ------------------------------------------------------------------------------
def _doc(**fields: Any) -> dict[str, Any]:
    """Glance's shape: sorted keys, no null values, times as Glance prints them."""
    return {
        key: timestamp(value) if isinstance(value, datetime) else value
        for key, value in sorted(fields.items())
        if value is not None
    }


def _namespace(ns: NamespaceRecord, contents: Contents | None = None,
               associations: list[AssociationRecord] | None = None) -> dict[str, Any]:  # fmt: skip
    fields = {f: getattr(ns, f) for f in NamespaceRecord.__dataclass_fields__}
    fields |= {"self": f"/v2{NS_PATH.format(namespace=ns.namespace)}",
               "schema": "/v2/schemas/metadefs/namespace"}  # fmt: skip
    if contents is not None:
        associations = contents.associations
        fields["objects"] = [_object(ns.namespace, o) for o in contents.objects] or None
        fields["properties"] = {p.name: _property(p, named=False) for p in contents.properties}
        fields["tags"] = [{"name": t.name} for t in contents.tags] or None
        fields["properties"] = fields["properties"] or None
    if associations:
        fields["resource_type_associations"] = [_association(a) for a in associations]
    return _doc(**fields)


def _object(namespace: str, obj: ObjectRecord) -> dict[str, Any]:
    return _doc(
        name=obj.name, description=obj.description, required=obj.required,
        properties={k: _doc(**v) for k, v in obj.properties.items()},
        created_at=obj.created_at, updated_at=obj.updated_at,
        self=f"/v2{NS_PATH.format(namespace=namespace)}/objects/{obj.name}",
        schema="/v2/schemas/metadefs/object",
    )  # fmt: skip


def _property(prop: PropertyRecord, *, named: bool = True) -> dict[str, Any]:
    return _doc(**prop.schema, name=prop.name if named else None)


def _association(assoc: AssociationRecord) -> dict[str, Any]:
    return _doc(name=assoc.name, prefix=assoc.prefix, properties_target=assoc.properties_target,
                created_at=assoc.created_at, updated_at=assoc.updated_at)  # fmt: skip


def _definition(namespace: str, item: Any) -> dict[str, Any]:
    if isinstance(item, ObjectRecord):
        return _object(namespace, item)
    if isinstance(item, PropertyRecord):
        return _property(item)
    return _doc(name=item.name, created_at=item.created_at, updated_at=item.updated_at)


# --- parsing --------------------------------------------------------------------------------
def _limit(request: Request, default: int | None, least: int) -> int | None:
    given = request.query_params.get("limit")
    if given is None:
        return default
    try:
        limit = int(given)
    except ValueError as exc:
        raise InvalidRequest("limit param must be an integer") from exc
    if limit < least:
        raise InvalidRequest("limit param must be positive")
    return min(limit, LIMIT_MAX)


def _sort(request: Request) -> tuple[str, str]:
    q = request.query_params
    direction = q.get("sort_dir", "desc")
    if direction not in ("asc", "desc"):
        raise InvalidRequest(f"Invalid sort direction: {direction}")
    return q.get("sort_key", "created_at"), direction


def _truthy(value: str | None) -> bool:
    """oslo's bool_from_string, as Glance reads X-Openstack-Append."""
    return (value or "").strip().lower() in ("1", "t", "true", "on", "y", "yes")


# --- namespaces -----------------------------------------------------------------------------
@router.get("/metadefs/namespaces")
def list_namespaces(request: Request) -> dict[str, Any]:
    q = request.query_params
    visibility = q.get("visibility")
    if visibility and visibility not in ("public", "private"):
        raise InvalidRequest(f"Invalid visibility value: {visibility}")
    key, direction = _sort(request)
    limit = _limit(request, LIMIT_DEFAULT, 0)
    types = [t for t in q.get("resource_types", "").split(",") if t]
    query = NamespaceQuery(
        project=None,
        visibility=visibility or None,
        resource_types=types,
        sort_key=key,
        sort_dir=direction,
        marker=q.get("marker"),
        limit=limit,
    )
    svc = _svc(request)
    found = svc.list_namespaces(context_of(request), query)
    assocs = svc.associations_of([ns.namespace for ns in found])
    params = [(k, v) for k, v in q.multi_items() if k != "marker"]
    doc: dict[str, Any] = {
        "namespaces": [_namespace(ns, associations=assocs.get(ns.namespace)) for ns in found],
        "first": "/v2/metadefs/namespaces" + (f"?{urlencode(params)}" if params else ""),
        "schema": "/v2/schemas/metadefs/namespaces",
    }  # fmt: skip
    if found and len(found) == limit:
        doc["next"] = "/v2/metadefs/namespaces?" + urlencode(
            [*params, ("marker", found[-1].namespace)]
        )
    return doc


@router.post("/metadefs/namespaces", status_code=201)
async def create_namespace(request: Request) -> JSONResponse:
    body = await json_body(request)
    ns, contents = await run_in_threadpool(
        _svc(request).create_namespace, context_of(request), body
    )
    doc = _namespace(ns, contents)
    headers = {"Location": f"{request.app.state.site.url}{doc['self']}"}
    return JSONResponse(doc, status_code=201, headers=headers)


@router.get(NS_PATH)
def show_namespace(namespace: str, request: Request) -> dict[str, Any]:
    rtype = request.query_params.get("resource_type")
    ns, contents = _svc(request).get_namespace(context_of(request), namespace, rtype)
    return _namespace(ns, contents)


@router.put(NS_PATH)
async def update_namespace(namespace: str, request: Request) -> dict[str, Any]:
    body = await json_body(request)
    svc, ctx = _svc(request), context_of(request)
    ns = await run_in_threadpool(svc.update_namespace, ctx, namespace, body)
    return _namespace(ns)


@router.delete(NS_PATH)
def delete_namespace(namespace: str, request: Request) -> Response:
    _svc(request).delete_namespace(context_of(request), namespace)
    return empty()


# --- resource types -------------------------------------------------------------------------
@router.get("/metadefs/resource_types")
def list_resource_types(request: Request) -> dict[str, Any]:
    found = _svc(request).resource_types(context_of(request))
    return {"resource_types": [_doc(name=r.name, created_at=r.created_at,
                                    updated_at=r.updated_at) for r in found]}  # fmt: skip


@router.get(NS_PATH + "/resource_types")
def list_associations(namespace: str, request: Request) -> dict[str, Any]:
    found = _svc(request).associations(context_of(request), namespace)
    return {"resource_type_associations": [_association(a) for a in found]}


@router.post(NS_PATH + "/resource_types", status_code=201)
async def associate(namespace: str, request: Request) -> JSONResponse:
    body = await json_body(request)
    svc, ctx = _svc(request), context_of(request)
    made = await run_in_threadpool(svc.associate, ctx, namespace, body)
    return JSONResponse(_association(made), status_code=201)


@router.delete(NS_PATH + "/resource_types/{resource_type}")
def dissociate(namespace: str, resource_type: str, request: Request) -> Response:
    _svc(request).dissociate(context_of(request), namespace, resource_type)
    return empty()


# --- objects, properties and tags -----------------------------------------------------------
def _kind(kinds: str) -> Kind:
    if kinds not in KINDS:
        raise NotFound(f"No {kinds} in a metadefs namespace")
    return KINDS[kinds]


@router.get(NS_PATH + "/{kinds}")
def list_definitions(namespace: str, kinds: str, request: Request) -> dict[str, Any]:
    kind, ctx = _kind(kinds), context_of(request)
    if kind is PROPERTIES:  # Glance lists every property, as a map by name
        found = _svc(request).definitions(ctx, kind, namespace, ("name", "asc"))
        return {"properties": {p.name: _property(p, named=False) for p in found}}
    limit = _limit(request, None, 1 if kind is OBJECTS else 0)
    marker = request.query_params.get("marker")
    found = _svc(request).definitions(ctx, kind, namespace, _sort(request), marker, limit)
    if kind is TAGS:
        return {"tags": [{"name": t.name} for t in found]}
    # Glance's objects list names its schema without the leading slash.
    return {
        "objects": [_object(namespace, o) for o in found],
        "schema": "v2/schemas/metadefs/objects",
    }


@router.post(NS_PATH + "/{kinds}", status_code=201)
async def add_definitions(namespace: str, kinds: str, request: Request) -> JSONResponse:
    body = await json_body(request)
    kind, svc, ctx = _kind(kinds), _svc(request), context_of(request)
    if kind is TAGS:  # bulk: replaces every tag, or adds to them with X-Openstack-Append
        append = _truthy(request.headers.get("x-openstack-append"))
        tags = await run_in_threadpool(svc.set_tags, ctx, namespace, body, append=append)
        return JSONResponse({"tags": [{"name": t.name} for t in tags]}, status_code=201)
    made = await run_in_threadpool(svc.add, ctx, kind, namespace, body)
    return JSONResponse(_definition(namespace, made), status_code=201)


@router.delete(NS_PATH + "/{kinds}")
def clear_definitions(namespace: str, kinds: str, request: Request) -> Response:
    _svc(request).clear(context_of(request), _kind(kinds), namespace)
    return empty()


@router.get(NS_PATH + "/{kinds}/{name}")
def show_definition(namespace: str, kinds: str, name: str, request: Request) -> dict[str, Any]:
    kind, svc, ctx = _kind(kinds), _svc(request), context_of(request)
    rtype = request.query_params.get("resource_type")
    if kind is PROPERTIES and rtype:
        return _definition(namespace, svc.property_for(ctx, namespace, name, rtype))
    return _definition(namespace, svc.definition(ctx, kind, namespace, name))


@router.put(NS_PATH + "/{kinds}/{name}")
async def update_definition(namespace: str, kinds: str, name: str, request: Request) -> Any:
    body = await json_body(request)
    kind, svc, ctx = _kind(kinds), _svc(request), context_of(request)
    changed = await run_in_threadpool(svc.change, ctx, kind, namespace, name, body)
    return _definition(namespace, changed)


@router.delete(NS_PATH + "/{kinds}/{name}")
def delete_definition(namespace: str, kinds: str, name: str, request: Request) -> Response:
    _svc(request).remove(context_of(request), _kind(kinds), namespace, name)
    return empty()


@router.post(NS_PATH + "/tags/{name}", status_code=201)
def add_tag(namespace: str, name: str, request: Request) -> JSONResponse:
    tag = _svc(request).add_tag(context_of(request), namespace, name)
    return JSONResponse(_definition(namespace, tag), status_code=201)


# --- schemas --------------------------------------------------------------------------------
@router.get("/schemas/metadefs/{name}")
def show_schema(name: str) -> dict[str, Any]:
    return metadefs.schema(name)
