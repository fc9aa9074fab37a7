"""Image API v2.17's ``/v2/images/{id}/locations``: list an image's locations, add one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from ferry.api.auth import enforce
from ferry.api.bodies import json_body
from ferry.api.errors import empty
from ferry.catalog import ImageRecord
from ferry.images import locations
from ferry.images.imports import Imports

router = APIRouter(prefix="/v2")


def _imports(request: Request) -> Imports:
    imports: Imports = request.app.state.imports
    return imports


def _target(record: ImageRecord) -> dict[str, Any]:
    return {
        "project_id": record.owner,
        "owner": record.owner,
        "visibility": record.visibility,
        "member_id": None,
    }


@router.get("/images/{image_id}/locations")
def list_locations(image_id: str, request: Request) -> JSONResponse:
    """Every location of the image (service users and admins: ``fetch_image_location``)."""
    record = _imports(request).service.get(image_id)
    enforce(request, "fetch_image_location", _target(record))
    return JSONResponse(locations.listed(record))


@router.post("/images/{image_id}/locations", status_code=202)
async def add_location(image_id: str, request: Request) -> Response:
    """Add a location to a queued image; a task verifies its data (``add_image_location``)."""
    body = await json_body(request)
    imports = _imports(request)
    record = await run_in_threadpool(imports.service.get, image_id)
    ctx = enforce(request, "add_image_location", _target(record))
    rid = request.scope.get("request_id")
    await run_in_threadpool(locations.add, imports, image_id, body, rid, ctx.user_id)
    return empty(202)
