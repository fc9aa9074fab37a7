"""Discovery: versions, schemas and the ``/v2/info`` documents."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ferry.images.service import schema

router = APIRouter()

# The versions the real Glance 33 listed, in its order (v2.14 and v2.16 absent there too).
VERSIONS = [("v2.15", "SUPPORTED"), ("v2.13", "SUPPORTED"), ("v2.12", "SUPPORTED"),
            ("v2.11", "SUPPORTED"), ("v2.10", "SUPPORTED"), ("v2.9", "SUPPORTED"),
            ("v2.8", "SUPPORTED"), ("v2.17", "CURRENT"), ("v2.7", "SUPPORTED"),
            ("v2.6", "SUPPORTED"), ("v2.5", "SUPPORTED"), ("v2.4", "SUPPORTED"),
            ("v2.3", "SUPPORTED"), ("v2.2", "SUPPORTED"), ("v2.1", "SUPPORTED"),
            ("v2.0", "SUPPORTED")]  # fmt: skip
IMPORT_METHODS = ("glance-direct", "web-download", "copy-image")


def _versions(request: Request) -> dict[str, Any]:
    href = f"{request.app.state.site.url}/v2/"
    return {
        "versions": [
            {"id": v, "status": s, "links": [{"rel": "self", "href": href}]} for v, s in VERSIONS
        ]
    }


@router.get("/")
def root(request: Request) -> JSONResponse:
    return JSONResponse(_versions(request), status_code=300)


@router.get("/versions")
def versions(request: Request) -> dict[str, Any]:
    return _versions(request)


@router.get("/v2/schemas/{name}")
def schemas(name: str) -> JSONResponse:
    if name not in ("image", "images", "task", "tasks"):
        return JSONResponse({"message": "Not Found"}, status_code=404)
    return JSONResponse(schema(name))


@router.get("/v2/info/stores")
def stores(request: Request) -> dict[str, Any]:
    return {"stores": [_store(s.config, detail=False) for s in request.app.state.stores]}


@router.get("/v2/info/stores/detail")
def stores_detail(request: Request) -> dict[str, Any]:
    return {"stores": [_store(s.config, detail=True) for s in request.app.state.stores]}


def _store(cfg: Any, *, detail: bool) -> dict[str, Any]:
    """A store as Glance lists it: flags are the string "true", absent when false."""
    doc: dict[str, Any] = {"id": cfg.id, "description": cfg.description}
    if cfg.default:
        doc["default"] = "true"
    if cfg.read_only:
        doc["read-only"] = "true"
    if detail:
        doc["type"] = cfg.type
        doc["properties"] = (
            {} if cfg.read_only else {"pool": cfg.pool, "cluster": cfg.cluster, "user": cfg.client}
        )
        doc["weight"] = 0
    return doc


@router.get("/v2/info/import")
def import_info() -> dict[str, Any]:
    return {
        "import-methods": {
            "description": "Import methods available.",
            "type": "array",
            "value": list(IMPORT_METHODS),
        }
    }


@router.get("/v2/info/usage")
def usage() -> dict[str, Any]:
    return {"usage": {}}
