"""Who the request is: ``context_of(request)``, set once per request by ``Authenticate``."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from ferry.identity import Context
from ferry.identity.policy import Policy


def context_of(request: Request) -> Context:
    """The caller's context (the noauth admin when the site runs without Keystone)."""
    ctx = request.scope.get("ferry.context")
    if ctx is None:
        ctx = Context.admin(request.app.state.owner)
    assert isinstance(ctx, Context)
    return ctx


def enforce(request: Request, action: str, target: dict[str, Any]) -> Context:
    """Check the site's policy for the caller; raise ``Forbidden`` when it says no."""
    ctx = context_of(request)
    policy: Policy = request.app.state.policy
    policy.enforce(ctx, action, target)
    return ctx
