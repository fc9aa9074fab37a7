"""Request bodies within the site's limits: bounded while read, shallow, clean text."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message

from ferry.catalog.rows import text
from ferry.config import LimitsConfig
from ferry.errors import InvalidRequest, TooLarge

TOO_LARGE = "Request is too large."  # oslo.middleware's sizelimit answer, as Glance gives it
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def limits(request: Request) -> LimitsConfig:
    """The serving site's limits."""
    found: LimitsConfig = request.app.state.site.limits
    return found


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``max_bytes``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(TOO_LARGE)
    parts: list[bytes] = []
    held = 0
    async for chunk in request.stream():
        held += len(chunk)
        if held > max_bytes:
            raise TooLarge(TOO_LARGE)
        parts.append(chunk)
    return b"".join(parts)


def parse_json(data: bytes, max_depth: int) -> Any:
    """Parse a JSON body: nesting at most ``max_depth``, strings without NUL or lone
    surrogates (the catalogue and the clients could not hold them)."""
    if depth(data) > max_depth:
        raise InvalidRequest(f"JSON body is nested deeper than {max_depth} levels")
    try:
        doc = json.loads(data or b"null")
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"Malformed JSON in request body: {exc}") from exc
    check_text(doc)
    return doc


def depth(data: bytes) -> int:
    """How deep arrays and objects nest, without parsing (strings are skipped)."""
    level = deepest = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        level += 1 if byte in b"[{" else -1
        deepest = max(deepest, level)
    return deepest


def check_text(doc: Any) -> None:
    """Refuse NUL characters and unpaired surrogates in any key or string of ``doc``."""
    todo = [doc]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, str):
            text(item, "JSON strings")


async def json_body(request: Request) -> Any:
    """The request's JSON body, within the site's limits."""
    bounds = limits(request)
    return parse_json(await read_body(request, bounds.max_request_body), bounds.max_json_depth)


class JsonRoute(APIRoute):
    """A route whose JSON body FastAPI parses is read and checked by ``json_body`` first."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            if request.method not in ("POST", "PUT", "PATCH"):
                return await handler(request)
            bounds = limits(request)
            body = await read_body(request, bounds.max_request_body)
            if body:
                parse_json(body, bounds.max_json_depth)
            return await handler(Request(request.scope, _replay(body, request)))

        return checked


def _replay(body: bytes, request: Request) -> Callable[[], Coroutine[Any, Any, Message]]:
    """A receive that gives ``body`` once, then the connection's own messages."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await request.receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
