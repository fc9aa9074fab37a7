"""What the commands on a site's API share: ``--url`` (FERRY_URL), the client, the output."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ferry.client import Doc, ImageClient
from ferry.errors import Unauthenticated

out = Console(highlight=False)
if not out.is_terminal:
    out.width = 1000  # piped: one table row per line, never folded


def url_option(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option("--url", envvar="FERRY_URL", help="The site's API endpoint.")
    ] = "http://127.0.0.1:9292",
) -> None:
    """The group's callback: keep the URL for its commands (and its sub-groups')."""
    ctx.obj = url


@contextmanager
def connect(ctx: typer.Context) -> Iterator[ImageClient]:
    with ImageClient(ctx.obj, token=token_from_environment()) as client:
        yield client


def token_from_environment() -> str | None:
    """``OS_AUTH_TOKEN``, else a token for the ``OS_*`` password variables an openrc sets (as
    openstackclient reads them), else none (a noauth site)."""
    if token := os.environ.get("OS_AUTH_TOKEN"):
        return token
    if not os.environ.get("OS_AUTH_URL"):
        return None
    from keystoneauth1 import exceptions, loading, session

    def env(name: str, default: str | None = None) -> str | None:
        return os.environ.get(f"OS_{name.upper()}", default)

    plugin: Any = loading.get_plugin_loader("password").load_from_options(
        auth_url=env("auth_url"),
        username=env("username"),
        password=env("password"),
        project_name=env("project_name"),
        user_domain_name=env("user_domain_name", "Default"),
        project_domain_name=env("project_domain_name", "Default"),
    )
    try:
        token = session.Session(auth=plugin).get_token()
    except exceptions.ClientException as exc:
        raise Unauthenticated(f"Keystone at {env('auth_url')} gave no token: {exc}") from exc
    return str(token) if token else None


def cell(value: Any) -> str:
    """A JSON value as one table cell: lists of plain values joined, other structures as JSON."""
    if value is None:
        return ""
    if isinstance(value, list) and not any(isinstance(v, dict | list) for v in value):
        return ", ".join(map(str, value))
    if isinstance(value, dict | list | bool):
        return json.dumps(value)
    return str(value)


def flatten(doc: Doc, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """A document's fields, nested objects' fields as dotted keys (``ferry.parent``)."""
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", None if value == {} else value


def show(doc: Doc) -> None:
    """A document as a two-column field/value table on stdout."""
    table = Table("field", "value")
    for key, value in flatten(doc):
        table.add_row(key, cell(value))
    out.print(table)
