"""Image API v2.17's ``/v2/images/{id}/locations``: list an image's locations, add one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from ferry.api.auth import context_of
from ferry.api.bodies import json_body
from ferry.api.errors import empty
from ferry.api.members import image_access
from ferry.images import locations
from ferry.images.imports import Imports

router = APIRouter(prefix="/v2")


def _imports(request: Request) -> Imports:
    imports: Imports = request.app.state.imports
    return imports


@router.get("/images/{image_id}/locations")
def list_locations(image_id: str, request: Request) -> JSONResponse:
    """Every location of the image (service users and admins: ``fetch_image_location``)."""
    record = image_access(request).fetch(context_of(request), image_id, "fetch_image_location")
    return JSONResponse(locations.listed(record))


@router.post("/images/{image_id}/locations", status_code=202)
async def add_location(image_id: str, request: Request) -> Response:
    """Add a location to a queued image; a task verifies its data (``add_image_location``)."""
    body = await json_body(request)
    ctx = context_of(request)
    access = image_access(request)
    await run_in_threadpool(access.fetch, ctx, image_id, "add_image_location")
    rid = request.scope.get("request_id")
    await run_in_threadpool(locations.add, _imports(request), image_id, body, rid, ctx.user_id)
    return empty(202)
