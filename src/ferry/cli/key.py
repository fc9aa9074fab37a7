"""``ferry key``: cephx keys."""

from __future__ import annotations

import typer

from ferry.block.auth import generate_key

app = typer.Typer(help="cephx-style keys.")


@app.callback()
def keys() -> None:
    """cephx-style keys."""


@app.command()
def generate() -> None:
    """Print a new key in Ceph's format (the kind 'ceph auth import' accepts)."""
    typer.echo(generate_key())
