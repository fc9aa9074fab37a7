"""Discovery: versions, schemas and the ``/v2/info`` documents."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from ferry.api.auth import enforce
from ferry.images.imports import METHODS
from ferry.images.service import schema
from ferry.images.stores import Store

router = APIRouter()

# The versions the real Glance 33 listed, in its order (v2.14 and v2.16 absent there too).
VERSIONS = [("v2.15", "SUPPORTED"), ("v2.13", "SUPPORTED"), ("v2.12", "SUPPORTED"),
            ("v2.11", "SUPPORTED"), ("v2.10", "SUPPORTED"), ("v2.9", "SUPPORTED"),
            ("v2.8", "SUPPORTED"), ("v2.17", "CURRENT"), ("v2.7", "SUPPORTED"),
            ("v2.6", "SUPPORTED"), ("v2.5", "SUPPORTED"), ("v2.4", "SUPPORTED"),
            ("v2.3", "SUPPORTED"), ("v2.2", "SUPPORTED"), ("v2.1", "SUPPORTED"),
            ("v2.0", "SUPPORTED")]  # fmt: skip


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
    if name not in ("image", "images", "member", "members", "task", "tasks"):
        return JSONResponse({"message": "Not Found"}, status_code=404)
    return JSONResponse(schema(name))


@router.get("/v2/info/stores")
def stores(request: Request) -> dict[str, Any]:
    return {"stores": [_store(s, detail=False) for s in request.app.state.stores]}


@router.get("/v2/info/stores/detail")
def stores_detail(request: Request) -> dict[str, Any]:
    """Stores with their backends' settings: admins' (``stores_info_detail``), as in Glance."""
    enforce(request, "stores_info_detail", {})
    return {"stores": [_store(s, detail=True) for s in request.app.state.stores]}


def _store(store: Store, *, detail: bool) -> dict[str, Any]:
    """A store as Glance lists it: flags are the string "true", absent when false."""
    cfg = store.config
    doc: dict[str, Any] = {"id": cfg.id, "description": cfg.description}
    if cfg.default:
        doc["default"] = "true"
    if cfg.read_only:
        doc["read-only"] = "true"
    if detail:
        doc["type"] = cfg.type
        doc["properties"] = (
            {}
            if cfg.read_only
            else {"pool": cfg.pool, "cluster": store.ref.cluster_name, "user": store.ref.client}
        )
        doc["weight"] = 0
    return doc


@router.get("/metrics")
def metrics(request: Request) -> PlainTextResponse:
    """Bytes this site's process read from and wrote to each store, in Prometheus' format."""
    site = request.app.state.site_name
    lines = []
    for kind in ("read", "written"):
        metric = f"ferry_store_bytes_{kind}_total"
        lines += [f"# HELP {metric} Bytes of image data {kind} by this site, per store.",
                  f"# TYPE {metric} counter"]  # fmt: skip
        for store in request.app.state.stores:
            labels = f'site="{site}",store="{store.id}",cluster="{store.ref.cluster_name or ""}"'
            lines.append(f"{metric}{{{labels}}} {getattr(store.traffic, kind)}")
    metric = "ferry_reconcile_passes_total"
    lines += [f"# HELP {metric} Reconcile passes this site's server has finished.",
              f"# TYPE {metric} counter",
              f'{metric}{{site="{site}"}} {request.app.state.reconciler.passes}']  # fmt: skip
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


@router.get("/v2/info/import")
def import_info() -> dict[str, Any]:
    return {
        "import-methods": {
            "description": "Import methods available.",
            "type": "array",
            "value": list(METHODS),
        }
    }


@router.get("/v2/info/usage")
def usage() -> dict[str, Any]:
    return {"usage": {}}
