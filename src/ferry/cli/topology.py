"""``ferry topology``: check a topology, import it from TripleO, write Ceph client files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console

from ferry import config as configuration
from ferry import topology
from ferry.errors import InvalidRequest
from ferry.permissions import write_private

app = typer.Typer(help="The multi-site topology: check it, import it, write client files.")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@app.callback()
def topologies() -> None:
    """The multi-site topology: check it, import it, write client files."""


@app.command()
def check(file: Annotated[Path, typer.Argument(help="The topology's YAML file.")]) -> None:
    """Validate a topology and show which store each site has on each cluster."""
    config = configuration.load(file)
    out.print(topology.matrix(config))
    for warning in topology.warnings(config):
        err.print(f"[yellow]warning:[/] {warning}")
    out.print(f"{file}: {len(config.sites)} sites, {len(config.clusters)} clusters: valid")


@app.command("import-tripleo")
def import_tripleo(
    stack: Annotated[
        list[str],
        typer.Option(
            help="NAME=PATH: a stack and its environment files (a file or a directory of "
            "*.yaml). Repeat for each stack, and for each extra file of a stack."
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here (default: stdout).")
    ] = None,
    catalog: Annotated[
        str, typer.Option(help="The shared catalogue's URL.")
    ] = "postgresql://ferry@localhost/ferry",
) -> None:
    """Write the ferry topology equivalent to TripleO DCN environment files."""
    from ferry.tripleo import import_tripleo as convert

    stacks: dict[str, list[Path]] = {}
    for spec in stack:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InvalidRequest(f"--stack takes NAME=PATH, got {spec!r}")
        stacks.setdefault(name, []).append(Path(path))
    imported = convert(stacks, catalog=catalog)
    text = yaml.safe_dump(imported.raw, sort_keys=False)  # import_tripleo validated it
    if output is None:
        out.print(text, markup=False, end="")
    else:
        write_private(output, text)  # it holds cephx keys and the glance user's password
        err.print(f"wrote {output}")
    for note in imported.notes:
        err.print(f"[yellow]not mapped:[/] {note}", markup=True)


@app.command("ceph-files")
def ceph_files(
    file: Annotated[Path, typer.Argument(help="The topology's YAML file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to write into.")],
) -> None:
    """Write each site's <cluster>.conf and keyring files for the other clusters it uses."""
    from ferry.tripleo import ceph_files as write

    for path in write(configuration.load(file), output):
        out.print(str(path))
