"""The ``ferry`` command: sub-apps, and the one table from errors to exit codes."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from ferry import errors
from ferry.cli import block, check, demo, image, key, keystone, serve, server, topology, up, volume

# One table: error class → exit code (errno values, as rbd reports them).
EXIT_CODES: dict[type[errors.FerryError], int] = {
    errors.Forbidden: 1,  # EPERM
    errors.Unauthenticated: 13,  # EACCES
    errors.NotFound: 2,  # ENOENT
    errors.InUse: 16,  # EBUSY
    errors.Conflict: 16,  # EBUSY
    errors.AlreadyExists: 17,  # EEXIST
    errors.InvalidRequest: 22,  # EINVAL
    errors.StorageFull: 28,  # ENOSPC
    errors.IntegrityError: 74,  # EBADMSG
    errors.BackendUnavailable: 110,  # ETIMEDOUT
}

app = typer.Typer(
    name="ferry",
    help="Distributed, multi-backend image and block storage for edge clouds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(block.app, name="block")
app.add_typer(image.app, name="image")
app.add_typer(key.app, name="key")
app.add_typer(keystone.app, name="keystone")
app.add_typer(server.app, name="server")
app.add_typer(topology.app, name="topology")
app.add_typer(volume.app, name="volume")
app.command("check")(check.check)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.command("up")(up.up)


def exit_code(exc: errors.FerryError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def main() -> None:
    """Entry point: a FerryError becomes one line on stderr and its exit code."""
    try:
        app()
    except errors.FerryError as exc:
        console = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
        console.print(f"ferry: error: {exc}", style="red")
        sys.exit(exit_code(exc))
