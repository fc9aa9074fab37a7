"""``/v2/cache``: Glance's cache API (Image API 2.14), admin-only by default."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ferry.api.auth import enforce
from ferry.api.errors import empty
from ferry.errors import InvalidRequest
from ferry.images.cache import ImageCache, Target

router = APIRouter(prefix="/v2")
TARGETS: dict[str, Target] = {"": "both", "both": "both", "cache": "cache", "queue": "queue"}


def site_cache(request: Request) -> ImageCache:
    cache: ImageCache = request.app.state.cache
    return cache


@router.get("/cache")
def state(request: Request) -> dict[str, Any]:
    enforce(request, "cache_list", {})
    cache = site_cache(request)
    cache.require()
    return {
        "cached_images": [asdict(entry) for entry in cache.cached()],
        "queued_images": cache.queued(),
    }


@router.put("/cache/{image_id}")
def queue(image_id: str, request: Request) -> Response:
    enforce(request, "cache_image", {})
    site_cache(request).queue(image_id)
    return empty(202)


@router.delete("/cache/{image_id}")
def delete(image_id: str, request: Request) -> Response:
    enforce(request, "cache_delete", {})
    site_cache(request).delete(image_id)
    return empty()


@router.delete("/cache")
def clear(request: Request) -> Response:
    """``x-image-cache-clear-target``: cache, queue, or both (the default)."""
    enforce(request, "cache_clear", {})
    cache = site_cache(request)
    cache.require()
    target = TARGETS.get(request.headers.get("x-image-cache-clear-target", "").strip().lower())
    if target is None:
        raise InvalidRequest(
            "If provided 'x-image-cache-clear-target' must be 'cache', 'queue' or empty string."
        )
    cache.clear(target)
    return empty()
