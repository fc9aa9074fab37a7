"""``/healthcheck``: oslo.middleware's plain answer, which load balancers (HAProxy) probe.

As in Glance's pipeline it needs no token and carries no request id.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter()


@router.get("/healthcheck", include_in_schema=False)
def healthcheck() -> Response:
    return Response(b"OK", media_type="text/plain; charset=UTF-8")


@router.head("/healthcheck", include_in_schema=False)
def healthcheck_head() -> Response:
    return Response(status_code=204)  # oslo answers a healthy HEAD with 204 No Content
