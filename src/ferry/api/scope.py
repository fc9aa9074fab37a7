"""Project scope for volumes, snapshots, backups and servers, as Cinder and Nova enforce it.

A record belongs to a project. A caller who may not read it gets 404, as if it did not exist;
one who may read it but not do the action gets 403. Listings show the caller's project; an
admin sees every project's with ``all_tenants=1`` (Cinder's and Nova's flag).
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from fastapi import Request

from ferry.api.auth import context_of
from ferry.catalog.resources import Records
from ferry.errors import NotFound
from ferry.identity import Context
from ferry.identity.policy import Policy


class Owned(Protocol):
    @property
    def project_id(self) -> str: ...


R = TypeVar("R", bound=Owned)

READ = {
    "Volume": "volume:get",
    "Snapshot": "volume:get_snapshot",
    "Backup": "backup:get",
    "Server": "os_compute_api:servers:show",
}
LIST = {
    "Volume": "volume:get_all",
    "Snapshot": "volume:get_all_snapshots",
    "Backup": "backup:get_all",
    "Server": "os_compute_api:servers:index",
}


def owned(request: Request, records: Records[R], record_id: str, action: str | None = None) -> R:
    """The record, if the caller may read it and (given) do ``action`` on it."""
    record = records.get(record_id)
    ctx, policy = context_of(request), _policy(request)
    target = {"project_id": record.project_id}
    if not policy.check(ctx, READ[records.noun], target):
        raise NotFound(f"{records.noun} {record_id} could not be found.")
    if action is not None:
        policy.enforce(ctx, action, target)
    return record


def creating(request: Request, action: str) -> dict[str, Any]:
    """The owner fields of a record the caller makes, once policy lets it make one."""
    ctx = context_of(request)
    _policy(request).enforce(ctx, action, {"project_id": ctx.project_id})
    return {"project_id": ctx.project_id, "user_id": ctx.user_id}


def listing(request: Request, noun: str, all_tenants: str | None) -> dict[str, Any]:
    """The filter a listing of ``noun`` records applies for the caller."""
    ctx = context_of(request)
    _policy(request).enforce(ctx, LIST[noun], {"project_id": ctx.project_id})
    if all_tenants not in (None, "0", "false", "False") and ctx.is_admin:
        return {}
    return {"project_id": _project(ctx)}


def _project(ctx: Context) -> str:
    if ctx.project_id is None:
        raise NotFound("a token scoped to a project is needed to list its resources")
    return ctx.project_id


def _policy(request: Request) -> Policy:
    policy: Policy = request.app.state.policy
    return policy
