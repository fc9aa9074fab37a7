"""``ferry server``: servers' disks on a site's Compute API: boot, stop, start, snapshot."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ferry.block.ops import format_size
from ferry.cli import image
from ferry.cli.endpoint import connect, out, show, url_option
from ferry.cli.volume import MissingImage, Zone
from ferry.client import Doc
from ferry.errors import FerryError

app = typer.Typer(help="Servers' disks: clones of images, or volumes, in a zone's cluster.")
app.callback()(url_option)
image_app = typer.Typer(help="Images made from servers' disks.")
app.add_typer(image_app, name="image")

ServerId = Annotated[str, typer.Argument(help="The server's id.")]


def disk(server: Doc) -> str:
    """The server's root disk: its block image, or the volume it boots from."""
    volumes = server.get("os-extended-volumes:volumes_attached") or []
    if volumes:
        return f"volume {volumes[0]['id']}"
    return str(server["ferry"].get("disk") or "")


def image_source(server: Doc) -> str:
    """How the image reached the zone: ``clone, 0 B moved``, ``copied, 12 MiB moved``..."""
    source = server["ferry"].get("image_source") or {}
    action = source.get("action")
    if not action:
        return ""
    return f"{action}, {format_size(source.get('moved') or 0)} moved"


# --- commands ------------------------------------------------------------------------------
@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The new server's name.")],
    image_id: Annotated[
        str | None, typer.Option("--image", help="Boot from a clone of this image.")
    ] = None,
    volume_id: Annotated[
        str | None, typer.Option("--volume", help="Boot from this volume.")
    ] = None,
    boot_from_volume: Annotated[
        int | None,
        typer.Option(
            "--boot-from-volume",
            min=1,
            metavar="SIZE",
            help="GiB: make a volume of the image and boot from it.",
        ),
    ] = None,
    availability_zone: Zone = None,
    missing_image: MissingImage = None,
) -> None:
    """Boot a server (its storage side); the zone defaults to the site's.

    A server that ends in ERROR is shown, then its fault is the error."""
    with connect(ctx) as client:
        server = client.create_server(
            name=name,
            imageRef=image_id,
            volume_id=volume_id,
            boot_volume_size=boot_from_volume,
            availability_zone=availability_zone,
            missing_image=missing_image,
        )
    show(server)
    if server["status"] == "ERROR":
        fault = (server.get("fault") or {}).get("message") or "no fault recorded"
        raise FerryError(f"server {server['id']} is in ERROR: {fault}")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List the servers, their disks and how their image got to the zone."""
    table = Table("id", "name", "status", "az", "image", "disk/volume", "image source")
    with connect(ctx) as client:
        for s in client.servers():
            table.add_row(
                s["id"], s.get("name") or "", s["status"], s["OS-EXT-AZ:availability_zone"],
                (s.get("image") or {}).get("id", ""), disk(s), image_source(s),
            )  # fmt: skip
    out.print(table)


@app.command("show")
def show_(ctx: typer.Context, server_id: ServerId) -> None:
    """Show a server's fields; its ferry.* fields say where its disk is and how it got there."""
    with connect(ctx) as client:
        show(client.server(server_id))


@app.command()
def stop(ctx: typer.Context, server_id: ServerId) -> None:
    """Stop a server (SHUTOFF)."""
    with connect(ctx) as client:
        client.stop_server(server_id)
        typer.echo(f"server {server_id} is {client.server(server_id)['status']}")


@app.command()
def start(ctx: typer.Context, server_id: ServerId) -> None:
    """Start a stopped server (ACTIVE)."""
    with connect(ctx) as client:
        client.start_server(server_id)
        typer.echo(f"server {server_id} is {client.server(server_id)['status']}")


@app.command()
def delete(ctx: typer.Context, server_id: ServerId) -> None:
    """Delete a server and its root disk; a volume it booted from is detached and kept."""
    with connect(ctx) as client:
        client.delete_server(server_id)
    typer.echo(f"deleted server {server_id}")


@image_app.command("create")
def create_image(
    ctx: typer.Context,
    server_id: ServerId,
    name: Annotated[str, typer.Option("--name", help="The new image's name.")],
) -> None:
    """Make an image of a server's disk, in the store on its zone's cluster only."""
    with connect(ctx) as client:
        image.fields(client.get(client.create_server_image(server_id, name)), image.SUMMARY)
