"""``ferry volume``: volumes, their snapshots and backups, on a site's Block Storage API."""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from rich.table import Table

from ferry.block.ops import format_size
from ferry.cli.endpoint import cell, connect, out, show, url_option

GiB = 1 << 30

app = typer.Typer(help="Volumes: copy-on-write clones of images, snapshots and volumes.")
app.callback()(url_option)
snapshot_app = typer.Typer(help="Volume snapshots: create, list, delete.")
backup_app = typer.Typer(help="Backups in the central site's cluster: full, then incremental.")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(backup_app, name="backup")

VolumeId = Annotated[str, typer.Argument(help="The volume's id.")]
Name = Annotated[str | None, typer.Option("--name", help="A name for it.")]
Force = Annotated[bool, typer.Option("--force", help="Even if the volume is in-use.")]
OfVolume = Annotated[str | None, typer.Option("--volume", help="Only this volume's.")]
Zone = Annotated[
    str | None,
    typer.Option("--availability-zone", help="The availability zone to make it in."),
]
MissingImage = Annotated[
    Literal["copy", "stream", "refuse"] | None,
    typer.Option(
        "--missing-image",
        help="If the zone's store lacks the image: copy it there once and clone it, stream "
        "it into a full disk, or refuse; default: the site's policy.",
    ),
]


def size(gib: int | None) -> str:
    return "" if gib is None else format_size(gib * GiB)


# --- volumes -------------------------------------------------------------------------------
@app.command("list")
def list_(
    ctx: typer.Context,
    az: Annotated[str | None, typer.Option("--az", help="Only this zone's volumes.")] = None,
) -> None:
    """List the volumes: where each is, and the block image it is a clone of."""
    table = Table("id", "name", "status", "size", "az", "bootable", "parent")
    with connect(ctx) as client:
        for v in client.volumes(availability_zone=az):
            table.add_row(
                v["id"], v.get("name") or "", v["status"], size(v["size"]),
                v["availability_zone"], v["bootable"], v["ferry"].get("parent") or "",
            )  # fmt: skip
    out.print(table)


@app.command("show")
def show_(ctx: typer.Context, volume_id: VolumeId) -> None:
    """Show a volume's fields; its ferry.* fields say where its data is and how it got there."""
    with connect(ctx) as client:
        show(client.volume(volume_id))


@app.command()
def create(
    ctx: typer.Context,
    size_gib: Annotated[
        int | None,
        typer.Option(
            "--size",
            min=1,
            metavar="GiB",
            help="GiB; default: the source's size (needed if blank).",
        ),
    ] = None,
    availability_zone: Zone = None,
    image: Annotated[str | None, typer.Option("--image", help="A clone of this image.")] = None,
    snapshot: Annotated[
        str | None, typer.Option("--snapshot", help="A clone of this volume snapshot.")
    ] = None,
    source_vol: Annotated[
        str | None, typer.Option("--source-vol", help="A clone of this volume.")
    ] = None,
    missing_image: MissingImage = None,
    name: Name = None,
    description: Annotated[
        str | None, typer.Option("--description", help="What it is for.")
    ] = None,
) -> None:
    """Create a volume: blank, or from an image, a snapshot or a volume (then in its zone).

    The zone defaults to the site's."""
    with connect(ctx) as client:
        show(
            client.create_volume(
                size=size_gib,
                availability_zone=availability_zone,
                imageRef=image,
                snapshot_id=snapshot,
                source_volid=source_vol,
                missing_image=missing_image,
                name=name,
                description=description,
            )
        )


@app.command()
def delete(
    ctx: typer.Context,
    volume_ids: Annotated[list[str], typer.Argument(help="The volumes' ids.")],
) -> None:
    """Delete volumes, in order; stop at the first that cannot be deleted."""
    with connect(ctx) as client:
        for volume_id in volume_ids:
            client.delete_volume(volume_id)
            typer.echo(f"deleted volume {volume_id}")


# --- snapshots -----------------------------------------------------------------------------
@snapshot_app.command("create")
def create_snapshot(
    ctx: typer.Context, volume_id: VolumeId, name: Name = None, force: Force = False
) -> None:
    """Snapshot a volume (protected, so volumes can be cloned from it)."""
    with connect(ctx) as client:
        show(client.create_snapshot(volume_id, name=name, force=force))


@snapshot_app.command("list")
def list_snapshots(ctx: typer.Context, volume: OfVolume = None) -> None:
    """List the volume snapshots."""
    table = Table("id", "volume", "name", "status", "size")
    with connect(ctx) as client:
        for s in client.snapshots(volume_id=volume):
            table.add_row(
                s["id"], s["volume_id"], s.get("name") or "", s["status"], size(s["size"])
            )
    out.print(table)


@snapshot_app.command("delete")
def delete_snapshot(
    ctx: typer.Context, snapshot_id: Annotated[str, typer.Argument(help="The snapshot's id.")]
) -> None:
    """Delete a snapshot no volume is cloned from."""
    with connect(ctx) as client:
        client.delete_snapshot(snapshot_id)
    typer.echo(f"deleted snapshot {snapshot_id}")


# --- backups -------------------------------------------------------------------------------
BackupId = Annotated[str, typer.Argument(help="The backup's id.")]


@backup_app.command("create")
def create_backup(
    ctx: typer.Context, volume_id: VolumeId, name: Name = None, force: Force = False
) -> None:
    """Back a volume up: in full the first time, then only what changed since the last."""
    with connect(ctx) as client:
        show(client.create_backup(volume_id, name=name, force=force))


@backup_app.command("list")
def list_backups(ctx: typer.Context, volume: OfVolume = None) -> None:
    """List the backups, and the bytes each one moved."""
    table = Table("id", "volume", "name", "status", "size", "az", "incremental", "moved")
    with connect(ctx) as client:
        for b in client.backups(volume_id=volume):
            table.add_row(
                b["id"], b["volume_id"], b.get("name") or "", b["status"], size(b["size"]),
                b["availability_zone"], cell(b["is_incremental"]),
                format_size(b["ferry"].get("moved") or 0),
            )  # fmt: skip
    out.print(table)


@backup_app.command("restore")
def restore_backup(
    ctx: typer.Context, backup_id: BackupId, name: Name = None, availability_zone: Zone = None
) -> None:
    """Restore a backup into a new volume (default: in the backed-up volume's zone)."""
    with connect(ctx) as client:
        done = client.restore_backup(backup_id, name=name, availability_zone=availability_zone)
        show(client.volume(done["volume_id"]))


@backup_app.command("delete")
def delete_backup(ctx: typer.Context, backup_id: BackupId) -> None:
    """Delete a backup; the others of the volume still restore."""
    with connect(ctx) as client:
        client.delete_backup(backup_id)
    typer.echo(f"deleted backup {backup_id}")
