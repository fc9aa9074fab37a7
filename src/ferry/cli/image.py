"""``ferry image``: images on a site's Image API: upload, copy between stores, download."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ferry.block.ops import format_size
from ferry.cli.endpoint import cell, connect, out, url_option
from ferry.cli.progress import transfer_bar
from ferry.client import Doc, ImageClient
from ferry.errors import FerryError, InvalidRequest

app = typer.Typer(help="Images on a site's Image API: upload, copy between stores, download.")
app.callback()(url_option)

SUMMARY = ("id", "name", "status", "size", "stores")

ImageId = Annotated[str, typer.Argument(help="The image's id.")]


def _value(key: str, value: Any) -> str:
    if key == "size" and isinstance(value, int):
        return f"{value} ({format_size(value)})"
    if key == "stores" and isinstance(value, str):
        return ", ".join(value.split(","))
    return cell(value)


def fields(image: Doc, keys: tuple[str, ...] | None = None) -> None:
    """An image as a two-column table on stdout; its locations one row each."""
    table = Table("field", "value")
    for key in keys or tuple(image):
        if key != "locations":
            table.add_row(key, _value(key, image.get(key)))
    if keys is None:
        for loc in image.get("locations", []):
            table.add_row("location", f"{loc['metadata'].get('store', '?')}  {loc['url']}")
    out.print(table)


def _default_store(client: ImageClient) -> str:
    return next(str(s["id"]) for s in client.stores() if s.get("default") == "true")


def _stores(image: Doc) -> list[str]:
    return [s for s in image.get("stores", "").split(",") if s]


# --- commands ------------------------------------------------------------------------------
@app.command()
def stores(ctx: typer.Context) -> None:
    """List the site's stores."""
    table = Table("id", "description", "default")
    with connect(ctx) as client:
        for s in client.stores():
            table.add_row(s["id"], s.get("description", ""), "yes" if s.get("default") else "")
    out.print(table)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List the images, every page."""
    table = Table("id", "name", "status", "size", "disk_format", "stores")
    with connect(ctx) as client:
        for i in client.images():
            size = "" if i.get("size") is None else format_size(i["size"])
            table.add_row(
                i["id"], i.get("name") or "", i["status"], size, i.get("disk_format") or "",
                ", ".join(_stores(i)),
            )  # fmt: skip
    out.print(table)


@app.command()
def show(ctx: typer.Context, image_id: ImageId) -> None:
    """Show an image's fields, its stores and where each copy lives."""
    with connect(ctx) as client:
        fields(client.get(image_id))


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The new image's name.")],
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", exists=True, dir_okay=False, help="Upload this file."),
    ] = None,
    from_url: Annotated[
        str | None,
        typer.Option("--from-url", help="Have the site fetch the data from this http(s) URL."),
    ] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="Store to put it in; default: the site's.")
    ] = None,
    disk_format: Annotated[str, typer.Option(help="raw, qcow2, vmdk, iso...")] = "raw",
    container_format: Annotated[str, typer.Option(help="bare, ovf...")] = "bare",
) -> None:
    """Create an image from a file or a URL. If that fails, the new image is deleted."""
    if (file is None) == (from_url is None):
        raise InvalidRequest("give the image's data with --file PATH or --from-url URL")
    with connect(ctx) as client:
        image = client.create(name=name, disk_format=disk_format, container_format=container_format)
        try:
            if file is not None:
                size = file.stat().st_size
                with transfer_bar(f"upload {name}", size) as step:
                    client.upload(image["id"], file, store=store, progress=lambda n: step(n, size))
            else:
                client.import_image(
                    image["id"], "web-download", uri=from_url, stores=[store] if store else None
                )
                with transfer_bar(f"fetch {name}", None) as step:
                    client.wait(image["id"], [store or _default_store(client)], progress=step)
        except BaseException:
            with suppress(FerryError):
                client.delete(image["id"])
            raise
        fields(client.get(image["id"]), SUMMARY)


@app.command()
def copy(
    ctx: typer.Context,
    image_id: ImageId,
    to: Annotated[
        list[str] | None, typer.Option("--to", help="A store to copy into; repeat for more.")
    ] = None,
    all_stores: Annotated[
        bool, typer.Option("--all-stores", help="Every writable store that lacks it.")
    ] = False,
    allow_failure: Annotated[
        bool | None,
        typer.Option(
            "--allow-failure/--no-allow-failure",
            help="Keep the copies that worked if one store fails (the server's default).",
        ),
    ] = None,
) -> None:
    """Copy an image into more stores (copy-image import) and wait until they hold it."""
    if bool(to) == all_stores:
        raise InvalidRequest("give the stores with --to STORE (repeatable) or --all-stores")
    with connect(ctx) as client:
        wanted = to or [s["id"] for s in client.stores() if not s.get("read-only")]
        client.import_image(
            image_id,
            "copy-image",
            stores=to,
            all_stores=all_stores or None,
            allow_failure=allow_failure,
        )
        size = client.get(image_id).get("size")
        with transfer_bar(f"copy to {', '.join(to or ['all stores'])}", size) as step:
            image = client.wait(image_id, wanted, progress=step)
    fields(image, SUMMARY)


@app.command()
def download(
    ctx: typer.Context,
    image_id: ImageId,
    output: Annotated[Path, typer.Option("--output", "-o", dir_okay=False, help="File to write.")],
) -> None:
    """Download an image's data; the file appears only once every byte has arrived."""
    part = output.with_name(f".{output.name}.part")
    with connect(ctx) as client:
        size = client.get(image_id).get("size")
        try:
            with part.open("wb") as f, transfer_bar(f"download {image_id}", size) as step:
                done = client.download(image_id, f, progress=lambda n: step(n, size))
                f.flush()
                os.fsync(f.fileno())
            part.replace(output)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    typer.echo(f"downloaded {format_size(done)} to {output}")


@app.command()
def delete(
    ctx: typer.Context,
    image_id: ImageId,
    store: Annotated[
        str | None, typer.Option("--store", help="Delete only the copy in this store.")
    ] = None,
) -> None:
    """Delete an image, or only its data in one store."""
    with connect(ctx) as client:
        if store:
            client.delete_from_store(store, image_id)
            typer.echo(f"deleted image {image_id} from store {store}")
        else:
            client.delete(image_id)
            typer.echo(f"deleted image {image_id}")
