"""``ferry keystone``: put a topology's sites in Keystone's catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ferry import config as configuration
from ferry.identity import catalog
from ferry.identity.credentials import admin

app = typer.Typer(help="Keystone: register ferry's services, users and endpoints.")
out = Console(highlight=False)
if not out.is_terminal:
    out.width = 1000  # piped: one table row per line, never folded
err = Console(stderr=True, highlight=False, soft_wrap=True)
_STYLE = {"created": "green", "updated": "yellow", "removed": "red", "unchanged": "dim"}


@app.callback()
def keystone() -> None:
    """Keystone: register ferry's services, users and endpoints."""


@app.command()
def register(
    config: Annotated[Path, typer.Option("--config", help="The deployment's YAML file.")],
    site: Annotated[
        list[str] | None,
        typer.Option("--site", help="Register this site (repeat; default: every keystone site)."),
    ] = None,
    os_cloud: Annotated[
        str | None,
        typer.Option(
            "--os-cloud",
            envvar="OS_CLOUD",
            help="Admin credentials from this clouds.yaml cloud (default: the OS_* variables).",
        ),
    ] = None,
    volumes: Annotated[
        bool,
        typer.Option(
            help="Also register the block-storage services (volumev3, block-storage); "
            "--no-volumes keeps a real Cinder's entries."
        ),
    ] = True,
) -> None:
    """Make Keystone hold ferry's service users, services and each site's endpoints.

    As an admin (an openrc's OS_* variables or --os-cloud): the service user of each keystone
    auth section, with roles admin and service on its project; services glance (image),
    cinderv3 (volumev3) and cinder (block-storage); public, internal and admin endpoints at
    each site's URL in its region. Idempotent: what already matches is left alone.
    """
    wanted = catalog.plan(configuration.load(config), site or (), volumes=volumes)
    for note in wanted.notes:
        err.print(f"[yellow]note:[/] {note}")
    credentials = admin(os_cloud)
    try:
        changes = catalog.register(credentials.identity(), wanted)
    finally:
        credentials.session.session.close()
    table = Table("kind", "name", "region", title=f"Keystone, as {credentials.where}")
    table.add_column("detail", overflow="fold")
    table.add_column("action")
    for c in changes:
        action = f"[{_STYLE[c.action]}]{c.action}[/]"
        table.add_row(c.kind, c.name, c.region, c.detail, action)
    out.print(table)
    done = [c for c in changes if c.action != "unchanged"]
    if not done:
        out.print("nothing changed: Keystone already holds all of it")
        return
    counts = {action: sum(c.action == action for c in done) for action in _STYLE}
    out.print(", ".join(f"{n} {action}" for action, n in counts.items() if n))
