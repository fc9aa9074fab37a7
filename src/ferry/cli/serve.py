"""``ferry serve``: one site's Image API under uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferry import config as configuration


def serve(
    config: Annotated[Path, typer.Option("--config", help="The deployment's YAML file.")],
    site: Annotated[str, typer.Option("--site", help="Which site of the file to serve.")],
    listen: Annotated[
        str | None, typer.Option(help="host:port to listen on (default: the site's 'listen').")
    ] = None,
) -> None:
    """Serve one site's OpenStack Image API v2 (multi-store)."""
    import uvicorn

    from ferry.api.app import create_app
    from ferry.api.server import site_options, uvicorn_config

    cfg = configuration.load(config)
    site_cfg = cfg.site(site)
    host, _, port = (listen or site_cfg.listen).rpartition(":")
    host = host or "127.0.0.1"
    options = site_options(cfg, site, host)
    app = create_app(cfg, site)
    uvicorn.Server(uvicorn_config(app, site_cfg.limits, host=host, port=int(port), **options)).run()
