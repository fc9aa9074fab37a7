"""``/v2/images`` and ``/v2/stores``: parse, call one service function, render."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ferry.api import members, render
from ferry.api.auth import context_of, enforce
from ferry.api.bodies import json_body, limits
from ferry.api.cache import site_cache
from ferry.api.errors import RangeNotSatisfiable, UnsupportedPatch, empty
from ferry.api.members import image_access
from ferry.errors import InvalidRequest, TooLarge
from ferry.images.cache import read_cached
from ferry.images.imports import METHODS
from ferry.images.location_patch import LocationPatch
from ferry.images.locations import http_data
from ferry.images.service import PATCH_TYPES, ImageService, ListQuery
from ferry.images.transfer import read_range

router = APIRouter(prefix="/v2")
router.include_router(members.router)  # an image's members are a part of it
UPLOAD_ALIGN = 4 << 20  # batches end on object boundaries: no read-modify-write
UPLOAD_BATCH = 8 << 20
LIST_PARAMS = ("limit", "marker", "sort_key", "sort_dir", "sort", "member_status")


def _svc(request: Request) -> ImageService:
    svc: ImageService = request.app.state.images
    return svc


@router.post("/images", status_code=201)
async def create(request: Request) -> JSONResponse:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    ctx = context_of(request)
    image_access(request).check_create(ctx, body)
    record = await run_in_threadpool(_svc(request).create, body, limits(request), ctx)
    site, stores = request.app.state.site, request.app.state.stores
    headers = {
        "Location": f"{site.url}/v2/images/{record.id}",
        "OpenStack-image-import-methods": ",".join(METHODS),
        "OpenStack-image-store-ids": ",".join(stores.ids),
    }
    return JSONResponse(render.image(record), status_code=201, headers=headers)


@router.get("/images")
def list_images(request: Request) -> dict[str, Any]:
    ctx = enforce(request, "get_images", {"project_id": context_of(request).project_id})
    query = _list_query(request)
    records = _svc(request).list(query, ctx)
    access = image_access(request)
    shown = [r for r in records if access.allows(ctx, r, "get_image")]
    doc: dict[str, Any] = {"images": [render.image(r) for r in shown]}
    doc["first"] = "/v2/images"
    doc["schema"] = "/v2/schemas/images"
    if len(records) == query.limit and shown:  # a page was full before the policy's cut
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
        params.append(("marker", shown[-1].id))
        doc["next"] = "/v2/images?" + urlencode(params)
    return doc


def _list_query(request: Request) -> ListQuery:
    q = request.query_params
    try:
        limit = int(q.get("limit", 25))
    except ValueError as exc:
        raise InvalidRequest("limit param must be an integer") from exc
    if limit < 0:
        raise InvalidRequest("limit param must be positive")
    sort: list[tuple[str, str]] = []
    if "sort" in q:
        for part in q["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            sort.append((key, direction or "desc"))
    else:
        keys, dirs = q.getlist("sort_key") or ["created_at"], q.getlist("sort_dir")
        sort = [(k, dirs[i] if i < len(dirs) else (dirs[-1] if dirs else "desc"))
                for i, k in enumerate(keys)]  # fmt: skip
    filters: dict[str, str | list[str]] = {}
    for key, value in q.multi_items():
        if key in LIST_PARAMS:
            continue
        if key == "tag":
            tags = filters.setdefault("tag", [])
            assert isinstance(tags, list)
            tags.append(value)
        else:
            filters[key] = value
    return ListQuery(
        filters=filters,
        sort=sort,
        marker=q.get("marker"),
        limit=min(limit, 1000),
        member_status=q.get("member_status", "accepted"),
    )


@router.get("/images/{image_id}")
def show(image_id: str, request: Request) -> dict[str, Any]:
    return render.image(image_access(request).fetch(context_of(request), image_id))


@router.patch("/images/{image_id}")
async def update(image_id: str, request: Request) -> dict[str, Any]:
    media = request.headers.get("content-type", "").split(";")[0].strip()
    if media not in PATCH_TYPES:
        raise UnsupportedPatch(f"Unsupported Content-Type {media or 'none'}: use {PATCH_TYPES[0]}")
    ops = await json_body(request)
    if not isinstance(ops, list):
        raise InvalidRequest("Request body must be a JSON array of operation objects.")
    access, ctx = image_access(request), context_of(request)
    guard = access.patch_guard(ctx, await run_in_threadpool(access.fetch, ctx, image_id))
    site, imports = request.app.state.site, request.app.state.imports
    patch = LocationPatch(imports) if site.imports.manage_locations else None
    record = await run_in_threadpool(
        _svc(request).update, image_id, ops, limits(request), media, guard, patch
    )
    return render.image(record)


@router.delete("/images/{image_id}")
def delete(image_id: str, request: Request) -> Response:
    missing = f"Failed to find image {image_id} to delete"
    image_access(request).fetch(context_of(request), image_id, "delete_image", missing=missing)
    _svc(request).delete(image_id)
    site_cache(request).forget(image_id)
    return empty()


@router.put("/images/{image_id}/tags/{tag}")
def add_tag(image_id: str, tag: str, request: Request) -> Response:
    image_access(request).fetch(context_of(request), image_id, "modify_image")
    _svc(request).set_tag(image_id, tag, True, limits(request))
    return empty()


@router.delete("/images/{image_id}/tags/{tag}")
def remove_tag(image_id: str, tag: str, request: Request) -> Response:
    image_access(request).fetch(context_of(request), image_id, "modify_image")
    _svc(request).set_tag(image_id, tag, False)
    return empty()


@router.post("/images/{image_id}/actions/{action}")
def action(image_id: str, action: str, request: Request) -> Response:
    if action not in ("deactivate", "reactivate"):
        raise InvalidRequest(f"Unknown action {action!r}")
    image_access(request).fetch(context_of(request), image_id, action)  # Glance's rule names
    _svc(request).deactivate(image_id, action == "reactivate")
    return empty()


@router.delete("/stores/{store_id}/{image_id}")
def delete_from_store(store_id: str, image_id: str, request: Request) -> Response:
    """Drop one store's copy: ``delete_image_location``, admin only by default, so an edge's
    users cannot remove central's copy."""
    image_access(request).fetch(
        context_of(request),
        image_id,
        "get_image_location",
        "delete_image_location",
        missing=f"Failed to find image {image_id}",
    )
    _svc(request).delete_from_store(store_id, image_id)
    return empty()


# --- data --------------------------------------------------------------------------------
@router.put("/images/{image_id}/file")
async def upload(image_id: str, request: Request) -> Response:
    """Stream the body into the store: object-aligned batches, no temporary file.

    The size cap is checked against the declared size before anything is allocated, and
    against the bytes as they arrive: a body longer than the cap or its declared size is cut.
    """
    cap = limits(request).image_size_cap
    size_header = request.headers.get("x-openstack-image-size")
    size = int_param(size_header, "x-openstack-image-size") if size_header else None
    if size is not None and size > cap:
        raise TooLarge(size_cap_message(cap))
    store_id = request.headers.get("x-image-meta-store")
    ctx = context_of(request)
    await run_in_threadpool(image_access(request).fetch, ctx, image_id, "upload_image")
    upload = await run_in_threadpool(_svc(request).start_upload, image_id, store_id, size)
    try:
        pending: list[bytes] = []
        held = received = 0
        async for chunk in request.stream():
            received += len(chunk)
            check_received(received, cap, size)
            pending.append(chunk)
            held += len(chunk)
            if held >= UPLOAD_BATCH:
                data = b"".join(pending)
                cut = len(data) - len(data) % UPLOAD_ALIGN
                await run_in_threadpool(upload.feed, memoryview(data)[:cut])
                pending, held = [data[cut:]], len(data) - cut
        if held:
            await run_in_threadpool(upload.feed, b"".join(pending))
        await run_in_threadpool(upload.finish)
    except BaseException:
        await run_in_threadpool(upload.abort)
        raise
    return empty()


@router.get("/images/{image_id}/file")
def download(image_id: str, request: Request) -> Response:
    image_access(request).fetch(context_of(request), image_id, "download_image")
    record, store = _svc(request).data_store(image_id)
    size = record.size or 0
    start, end = 0, size
    headers = {"Content-MD5": record.checksum or ""}
    status = 200
    wanted = request.headers.get("range")
    if wanted:
        start, end = _range(wanted, size)
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        status = 206
    headers["Content-Length"] = str(end - start)
    cached = site_cache(request).open(record)  # the site's own copy, counted as a hit
    data = (
        read_cached(cached, start, end)
        if cached is not None
        else http_data(request.app.state.imports, record, store, start, end)
        if store.config.type == "http"  # the data is at its URL
        else read_range(store.open_snap(image_id), start, end)
    )
    return StreamingResponse(
        data,
        status_code=status,
        media_type="application/octet-stream",
        headers=headers,
    )


def _range(header: str, size: int) -> tuple[int, int]:
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not m or (not m[1] and not m[2]):
        raise RangeNotSatisfiable(f"Invalid Range header: {header}")
    if m[1]:
        start, end = int(m[1]), (int(m[2]) + 1 if m[2] else size)
    else:  # a suffix: the last N bytes
        start, end = max(0, size - int(m[2])), size
    end = min(end, size)
    if start >= end:
        raise RangeNotSatisfiable(f"Requested range not satisfiable: {header} of {size} bytes")
    return start, end


def size_cap_message(cap: int) -> str:
    return f"Denying attempt to upload image larger than {cap} bytes."  # Glance's words


def check_received(received: int, cap: int, declared: int | None) -> None:
    """Cut a body off once it is longer than the size cap (413) or its declared size (400)."""
    if received > cap:
        raise TooLarge(size_cap_message(cap))
    if declared is not None and received > declared:
        raise InvalidRequest(
            f"the image data is more than the {declared} bytes its size was given as"
        )


def int_param(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise InvalidRequest(f"{what} must be an integer, not {text!r}") from exc
    if value < 0:
        raise InvalidRequest(f"{what} must not be negative")
    return value
