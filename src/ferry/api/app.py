"""``create_app(config, site)``: the Image API of one site."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferry import errors
from ferry.api import cache, discovery, health, images, locations, metadefs, tasks, volumes
from ferry.api.auth import Authenticate
from ferry.api.errors import ferry_error, http_error, validation_error
from ferry.config import Config
from ferry.identity.keystone import Tokens
from ferry.identity.policy import Policy
from ferry.images.cache import ImageCache
from ferry.images.imports import Worker
from ferry.services import open_site


def create_app(config: Config, site_name: str) -> FastAPI:
    """The app for one site: the lifespan opens the catalogue and the stores, then closes them.

    With ``auth.mode: keystone`` every request but the version documents needs a valid token;
    with ``noauth`` every request acts as admin of ``config.owner``.
    """
    site = config.site(site_name)
    auth = config.site_auth(site_name)
    policy = Policy(auth.policy_file)  # a bad file stops the site here
    tokens = Tokens(auth.keystone) if auth.mode == "keystone" and auth.keystone else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with open_site(config, site_name) as services:
            app.state.site = site
            app.state.site_name = site_name
            app.state.owner = config.owner
            app.state.noauth = tokens is None
            app.state.policy = policy
            app.state.stores = services.stores
            app.state.images = services.images
            app.state.imports = services.imports
            app.state.volumes = services.volumes
            app.state.reconciler = services.reconciler
            app.state.cache = ImageCache(site.cache, site_name, services.images, services.imports)
            workers = [Worker(services.imports) for _ in range(site.imports.workers)]
            for worker in workers:
                worker.start()
            services.reconciler.start()  # its first pass finishes what a dead process left
            app.state.cache.start()
            try:
                yield
            finally:
                app.state.cache.stop()
                services.reconciler.stop()
                for worker in workers:
                    worker.stop()
                if tokens is not None:
                    tokens.close()

    app = FastAPI(
        title=f"ferry API ({site_name}): images, volumes, servers' disks",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.add_exception_handler(errors.FerryError, ferry_error)
    app.add_exception_handler(HTTPException, http_error)  # no route, no such method
    app.add_exception_handler(RequestValidationError, validation_error)
    app.router.redirect_slashes = False  # /v2/images/ is a 404 in Glance, not a redirect
    app.include_router(discovery.router)
    app.include_router(health.router)
    app.include_router(images.router)
    app.include_router(cache.router)
    app.include_router(locations.router)
    app.include_router(metadefs.router)
    app.include_router(tasks.router)
    app.include_router(volumes.router)
    if tokens is not None:
        app.add_middleware(Authenticate, tokens=tokens)
    app.add_middleware(RequestId)  # outermost: a 401 carries a request id too
    return app


class RequestId:
    """Every response but the version documents carries ``x-openstack-request-id``."""

    UNMARKED = frozenset({"/", "/versions", "/metrics", "/healthcheck"})  # as Glance's

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.UNMARKED:
            await self.app(scope, receive, send)
            return
        request_id = f"req-{uuid.uuid4()}"
        scope["request_id"] = request_id
        rid = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                headers.append((b"x-openstack-request-id", rid))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
