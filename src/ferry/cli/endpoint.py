"""What the commands on a site's API share: ``--url`` (FERRY_URL), the client, the output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ferry.client import Doc, ImageClient

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
    with ImageClient(ctx.obj) as client:
        yield client


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
