"""``ferry check``: verify a site's catalogue against its clusters; ``--repair`` reconciles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ferry import config as configuration
from ferry.recovery.check import check as run_check
from ferry.services import open_site


def check(
    config: Annotated[Path, typer.Option("--config", help="The deployment's YAML file.")],
    site: Annotated[str, typer.Option("--site", help="Which site's stores to check.")],
    deep: Annotated[
        bool, typer.Option(help="Also read every location's data and check its sha512.")
    ] = False,
    repair: Annotated[
        bool,
        typer.Option(
            help="Do what the reconciler would: finish or undo cut-off work, remove orphans."
        ),
    ] = False,
) -> None:
    """Check every image location of a site's stores, stuck records and orphans.

    Exits 1 if anything is wrong (after --repair: if anything could not be repaired).
    """
    console = Console()
    with open_site(configuration.load(config), site) as services:
        problems, report = run_check(services, deep=deep, repair=repair)
    for line in problems:
        console.print(f"[red]location[/red] {line}", soft_wrap=True)
    for title, lines in (
        ("repaired", report.actions),
        ("removed" if repair else "orphan", report.orphans),
        ("stuck", report.stuck),
        ("error", report.errors),
    ):
        for line in lines:
            console.print(f"[yellow]{title}[/yellow] {line}", highlight=False, soft_wrap=True)
    left = problems + report.stuck + report.errors + ([] if repair else report.orphans)
    if left:
        raise typer.Exit(1)
    console.print("[green]ok[/green]: every location is whole, nothing stuck, no orphans")
