"""Errors on the wire: one table from error class to HTTP status, Glance's two body shapes."""

from __future__ import annotations

import html
import logging
from http import HTTPStatus

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match

from ferry import errors

log = logging.getLogger(__name__)


class UnsupportedPatch(errors.InvalidRequest):
    """A PATCH whose media type is not a JSON-patch Glance accepts."""


class RangeNotSatisfiable(errors.InvalidRequest):
    """A Range header outside the image."""


# One table: error class -> HTTP status. Subclasses come before their bases (MRO lookup).
STATUS: dict[type[errors.FerryError], int] = {
    errors.NotFound: 404,
    errors.NoData: 204,
    errors.AlreadyExists: 409,
    errors.InUse: 409,
    errors.Conflict: 409,
    errors.FormatMismatch: 415,
    errors.TooLarge: 413,
    UnsupportedPatch: 415,
    RangeNotSatisfiable: 416,
    errors.InvalidRequest: 400,
    errors.ReadOnlyStore: 410,
    errors.Forbidden: 403,
    errors.Unauthenticated: 401,
    errors.StorageFull: 413,
    errors.BackendUnavailable: 503,
    errors.IntegrityError: 500,
}


def status_of(exc: errors.FerryError) -> int:
    return next((STATUS[c] for c in type(exc).__mro__ if c in STATUS), 500)


def error_response(request: Request, status: int, message: str) -> Response:
    """Glance's error body: HTML by default, JSON when the client asks for JSON."""
    if status == 204:
        return empty(204)
    phrase = HTTPStatus(status).phrase
    code = f"{status} {phrase}"
    if status == 415:  # webob's wording for this status, then the reason
        message = (
            "The request media type application/octet-stream is not supported by this server."
            f"\n<br /><br />\n{message}"
        )
    if "application/json" in request.headers.get("accept", ""):
        body = {"message": f"{message}<br /><br />\n\n\n", "code": code, "title": phrase}
        return JSONResponse(body, status_code=status)
    text = message if status == 415 else f"{html.escape(message)}<br /><br />\n\n\n"
    page = (
        f"<html>\n <head>\n  <title>{code}</title>\n </head>\n <body>\n  <h1>{code}</h1>\n"
        f"  {text}\n </body>\n</html>"
    )
    return Response(page, status_code=status, media_type="text/html; charset=UTF-8")


def empty(status: int = 204) -> Response:
    """Glance's empty answers carry a text/html content type and a zero length."""
    return Response(b"", status_code=status, media_type="text/html; charset=UTF-8")


async def ferry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.FerryError)
    status = status_of(exc)
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    return error_response(request, status, str(exc))


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (no such route, method not allowed) in Glance's body."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        message = "The resource could not be found."  # webob's words, as Glance sends them
    elif status == 405:
        message = f"The method {request.method} is not allowed for this resource."
    else:
        message = str(exc.detail)
    response = error_response(request, status, message)
    response.headers.update(exc.headers or {})
    if status == 405:  # every method of the path, as Glance's Allow lists them
        response.headers["Allow"] = _allowed(request)
    return response


def _allowed(request: Request) -> str:
    """The methods some route takes for the request's path, in Glance's order."""
    routes = request.app.router.routes
    allowed = []
    for method in ("GET", "PUT", "POST", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in routes):
            allowed.append(method)
    return ", ".join(allowed)


async def validation_error(request: Request, exc: Exception) -> Response:
    """A body or parameter FastAPI could not parse: Glance's (and Cinder's) 400."""
    assert isinstance(exc, RequestValidationError)
    problems = [
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
        for e in exc.errors()
    ]
    return error_response(request, 400, "Invalid input: " + "; ".join(problems))
