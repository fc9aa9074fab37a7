"""Who the request is: ``context_of(request)``, set once per request by ``Authenticate``."""

from __future__ import annotations

from fastapi import Request

from ferry.identity import Context


def context_of(request: Request) -> Context:
    """The caller's context (the noauth admin when the site runs without Keystone)."""
    ctx = request.scope.get("ferry.context")
    if ctx is None:
        ctx = Context.admin(request.app.state.owner)
    assert isinstance(ctx, Context)
    return ctx
