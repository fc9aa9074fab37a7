"""``/v2/images/{id}/members``: Glance's image members API v2 (parse, call, render)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ferry.api.auth import context_of
from ferry.api.bodies import json_body, limits
from ferry.api.errors import empty
from ferry.api.render import timestamp
from ferry.catalog.members import MemberRecord
from ferry.errors import InvalidRequest
from ferry.identity.policy import Policy
from ferry.images.access import ImageAccess
from ferry.images.members import ImageMembers
from ferry.images.service import ImageService

router = APIRouter()
MEMBER_ID_MAX = 255  # the catalogue's column


def image_access(request: Request) -> ImageAccess:
    """The site's image visibility and policy checks (every image route goes through them)."""
    images: ImageService = request.app.state.images
    policy: Policy = request.app.state.policy
    return ImageAccess(images.catalog, policy)


def _members(request: Request) -> ImageMembers:
    return ImageMembers(image_access(request))


def member(record: MemberRecord) -> dict[str, Any]:
    """A member as Glance shows it, in its key order."""
    return {
        "member_id": record.member_id,
        "image_id": record.image_id,
        "status": record.status,
        "created_at": timestamp(record.created_at),
        "updated_at": timestamp(record.updated_at),
        "schema": "/v2/schemas/member",
    }


@router.get("/images/{image_id}/members")
def list_members(image_id: str, request: Request) -> dict[str, Any]:
    found = _members(request).list(context_of(request), image_id)
    return {"members": [member(m) for m in found], "schema": "/v2/schemas/members"}


@router.post("/images/{image_id}/members")
async def add_member(image_id: str, request: Request) -> dict[str, Any]:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidRequest('Expected a member in the form: {"member": "image_id"}')
    if "member" not in body:
        raise InvalidRequest("Member to be added not specified")
    member_id = body["member"]
    if not member_id:
        raise InvalidRequest("Member can't be empty")
    if not isinstance(member_id, str) or len(member_id) > MEMBER_ID_MAX:
        raise InvalidRequest(f"Member must be a project id of at most {MEMBER_ID_MAX} characters")
    most = limits(request).image_member_quota
    added = await run_in_threadpool(
        _members(request).add, context_of(request), image_id, member_id, most
    )
    return member(added)


@router.get("/images/{image_id}/members/{member_id}")
def show_member(image_id: str, member_id: str, request: Request) -> dict[str, Any]:
    return member(_members(request).get(context_of(request), image_id, member_id))


@router.put("/images/{image_id}/members/{member_id}")
async def answer(image_id: str, member_id: str, request: Request) -> dict[str, Any]:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidRequest('Expected a status in the form: {"status": "status"}')
    if "status" not in body:
        raise InvalidRequest("Status not specified")
    found = await run_in_threadpool(
        _members(request).answer, context_of(request), image_id, member_id, body["status"]
    )
    return member(found)


@router.delete("/images/{image_id}/members/{member_id}")
def remove_member(image_id: str, member_id: str, request: Request) -> Response:
    _members(request).remove(context_of(request), image_id, member_id)
    return empty()
