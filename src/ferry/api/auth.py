"""Who the request is: ``Authenticate`` sets the context once per request; routes read it with
``context_of`` and check the site's policy with ``enforce``."""

from __future__ import annotations

import json
from typing import Any

import anyio
from fastapi import Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ferry.errors import BackendUnavailable, Unauthenticated
from ferry.identity import Context
from ferry.identity.keystone import Tokens
from ferry.identity.policy import Policy

# Answered without a token, as Glance answers them before its auth filter.
PUBLIC_PATHS = frozenset({"/", "/versions", "/healthcheck", "/docs", "/openapi.json"})
CONTEXT_KEY = "ferry.context"


def context_of(request: Request) -> Context:
    """The caller's context (the noauth admin when the site runs without Keystone)."""
    ctx = request.scope.get(CONTEXT_KEY)
    if ctx is None:
        if not request.app.state.noauth:  # a public path reached a route that needs a caller
            raise Unauthenticated("Authentication required")
        ctx = Context.admin(request.app.state.owner)
    assert isinstance(ctx, Context)
    return ctx


def enforce(request: Request, action: str, target: dict[str, Any]) -> Context:
    """Check the site's policy for the caller; raise ``Forbidden`` when it says no."""
    ctx = context_of(request)
    policy: Policy = request.app.state.policy
    policy.enforce(ctx, action, target)
    return ctx


class Authenticate:
    """keystonemiddleware's job for an ASGI app: every request but ``PUBLIC_PATHS`` needs a
    valid ``X-Auth-Token``; a missing or bad one is 401 with ``WWW-Authenticate``."""

    def __init__(self, app: ASGIApp, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            scope[CONTEXT_KEY] = await anyio.to_thread.run_sync(
                self.tokens.context, headers.get("x-auth-token"), headers.get("x-service-token")
            )
        except Unauthenticated as exc:
            await self._refuse(send, 401, "Unauthorized", str(exc))
            return
        except BackendUnavailable as exc:
            await self._refuse(send, 503, "Service Unavailable", str(exc))
            return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, status: int, title: str, message: str) -> None:
        body = json.dumps({"error": {"code": status, "title": title, "message": message}})
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if status == 401:
            uri = self.tokens.config.auth_url.removesuffix("/v3")
            headers.append((b"www-authenticate", f'Keystone uri="{uri}"'.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body.encode()})
