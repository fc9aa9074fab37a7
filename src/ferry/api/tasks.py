"""Imports and tasks: ``/v2/images/{id}/import``, ``/stage``, ``/tasks``, ``/v2/tasks``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from ferry.api import render
from ferry.api.auth import context_of, enforce
from ferry.api.bodies import json_body, limits
from ferry.api.errors import empty
from ferry.api.images import check_received, int_param
from ferry.api.members import image_access
from ferry.errors import InvalidRequest
from ferry.images import glance_download
from ferry.images.imports import Imports
from ferry.images.legacy_tasks import create_task as create_legacy_task

router = APIRouter(prefix="/v2")


def _imports(request: Request) -> Imports:
    imports: Imports = request.app.state.imports
    return imports


@router.post("/images/{image_id}/import", status_code=202)
async def import_image(image_id: str, request: Request) -> Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    method = body.get("method")
    copying = isinstance(method, dict) and method.get("name") == "copy-image"
    # Copying an image is copy_image's (admin); any other import writes data: modify_image.
    rule = "copy_image" if copying else "modify_image"
    ctx, access, imports = context_of(request), image_access(request), _imports(request)
    await run_in_threadpool(access.fetch, ctx, image_id, rule)
    source = None
    if isinstance(method, dict) and method.get("name") == glance_download.METHOD:
        # the worker has no caller: what needs the caller's rights is checked now
        check = glance_download.check
        source = await run_in_threadpool(check, body, ctx, access, imports.regions)
    rid = request.scope.get("request_id")
    await run_in_threadpool(imports.request, image_id, body, rid, source)
    return empty(202)


@router.put("/images/{image_id}/stage", status_code=204)
async def stage(image_id: str, request: Request) -> Response:
    """glance-direct's first step: the body goes to the site's staging area."""
    cap = limits(request).image_size_cap
    ctx = context_of(request)
    await run_in_threadpool(image_access(request).fetch, ctx, image_id, "modify_image")
    staging = await run_in_threadpool(_imports(request).start_stage, image_id)
    try:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            check_received(received, cap, None)
            if chunk:
                await run_in_threadpool(staging.feed, chunk)
        await run_in_threadpool(staging.finish)
    except BaseException:
        await run_in_threadpool(staging.abort)
        raise
    return empty()


@router.get("/images/{image_id}/tasks")
def image_tasks(image_id: str, request: Request) -> dict[str, Any]:
    imports = _imports(request)
    image_access(request).fetch(context_of(request), image_id)  # 404 unless the caller sees it
    found = imports.service.catalog.list_tasks(image_id=image_id, sort_dir="asc", limit=1000)
    return {"tasks": [render.image_task(t) for t in found]}


@router.post("/tasks", status_code=201)
async def create_task(request: Request) -> JSONResponse:
    """Glance's tasks API create: admin-only by default (``tasks_api_access``, ``add_task``)."""
    _tasks_api(request, "add_task")
    ctx = context_of(request)
    body = await json_body(request)
    rid = request.scope.get("request_id")
    task = await run_in_threadpool(
        create_legacy_task, _imports(request), body, ctx.project_id, ctx.user_id, rid
    )
    headers = {"Location": f"/v2/tasks/{task.id}"}
    return JSONResponse(render.task(task), status_code=201, headers=headers)


@router.get("/tasks")
def list_tasks(request: Request) -> dict[str, Any]:
    _tasks_api(request, "get_tasks")
    q = request.query_params
    limit = min(int_param(q["limit"], "limit"), 1000) if "limit" in q else 25
    found = _imports(request).service.catalog.list_tasks(
        status=q.get("status"),
        type=q.get("type"),
        sort_dir=q.get("sort_dir", "desc"),
        limit=limit,
        marker=q.get("marker"),
    )
    doc: dict[str, Any] = {"tasks": [render.task_summary(t) for t in found]}
    doc["first"] = "/v2/tasks"
    doc["schema"] = "/v2/schemas/tasks"
    if found and len(found) == limit:
        doc["next"] = f"/v2/tasks?marker={found[-1].id}&limit={limit}"
    return doc


@router.get("/tasks/{task_id}")
def show_task(task_id: str, request: Request) -> dict[str, Any]:
    _tasks_api(request, "get_task")
    return render.task(_imports(request).service.catalog.get_task(task_id))


def _tasks_api(request: Request, action: str) -> None:
    """Glance's tasks API is admin-only by default: ``tasks_api_access``, then ``action``."""
    target = {"project_id": context_of(request).project_id}
    enforce(request, "tasks_api_access", target)
    enforce(request, action, target)
