"""``ferry up``: every site of a topology on this machine, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table

from ferry import config as configuration
from ferry import topology
from ferry.config import Config
from ferry.permissions import make_dir, write_private

out = Console(highlight=False)

DEFAULT_DATA = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "ferry"


def up(
    topology_file: Annotated[
        Path | None,
        typer.Option("--topology", help="The topology to run (default: the built-in example)."),
    ] = None,
    data: Annotated[
        Path, typer.Option("--data", help="Where the built-in example keeps its clusters.")
    ] = DEFAULT_DATA,
) -> None:
    """Run every site's Image API, each on its own port, sharing one catalogue."""
    from ferry.sites import Sites

    if topology_file is None:
        topology_file = data / "topology.yaml"
        if not topology_file.exists():
            make_dir(data, parents=True)
            raw = topology.example(data.resolve())
            write_private(topology_file, yaml.safe_dump(raw, sort_keys=False))  # holds keys
            out.print(f"Wrote the built-in example topology to {topology_file}")
    config = configuration.load(topology_file)
    for line in topology.provision(config):
        out.print(line)
    sites = Sites(config)
    sites.start()
    out.print(site_table(config))
    central = config.central or next(iter(config.sites))
    out.print(
        f"Try: [bold]export FERRY_URL={config.site(central).url}; ferry image stores[/]  or  "
        f"[bold]glance --os-image-url {config.site(central).url} stores-info[/]\n"
        "Ctrl-C stops every site."
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops cleanly too
    try:
        sites.wait()
    except KeyboardInterrupt:
        out.print("Stopping...")
    finally:
        sites.stop()
    out.print("Stopped.")


def site_table(config: Config) -> Table:
    table = Table(title="ferry sites")
    for column in ("site", "role", "Image API", "stores (* default)"):
        table.add_column(column)
    for name, site in config.sites.items():
        stores = ", ".join(
            ref.config.id
            + ("*" if ref.config.default else "")
            + (f" ({ref.cluster_name})" if ref.cluster_name not in (None, ref.config.id) else "")
            for ref in config.stores(name)
        )
        table.add_row(name, site.role, site.url, stores)
    return table
