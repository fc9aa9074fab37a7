"""``ferry demo``: the DCN guide's image workflow on three sites, on this machine, no setup."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from ferry import config as configuration
from ferry import topology
from ferry.block import ImageSpec, connect, ops
from ferry.cli.progress import transfer_bar
from ferry.cli.up import site_table
from ferry.client import ImageClient
from ferry.config import Config
from ferry.permissions import make_dir, write_private

console = Console(highlight=False)
SITES = ("central", "dcn0", "dcn1")


def demo(
    workdir: Annotated[
        Path | None,
        typer.Option("--dir", help="Keep the demo's sites here (default: a temp dir)."),
    ] = None,
    size: Annotated[str, typer.Option(help="Size of the demo image.")] = "512M",
) -> None:
    """The DCN guide on three sites: images, copies, volumes, instances, snapshots, backups."""
    base = (workdir or Path(tempfile.mkdtemp(prefix="ferry-demo-"))).resolve()
    make_dir(base, parents=True)
    step = _Steps()
    started = time.monotonic()

    step(
        "Start three sites: central, dcn0 and dcn1",
        "Each site has its own storage cluster (here an embedded cluster: a directory) and its "
        "own Image API, the OpenStack Image API v2 that glance and openstack talk to. They share "
        "one catalogue, so an image has the same ID everywhere.",
        "ferry up",
    )
    from ferry.sites import Sites

    raw = topology.example(base, ports=[_free_port() for _ in SITES])
    write_private(base / "topology.yaml", yaml.safe_dump(raw, sort_keys=False))  # holds keys
    config = configuration.load(base / "topology.yaml")
    topology.provision(config)
    sites = Sites(config)
    sites.start()
    try:
        console.print(site_table(config))
        _workflow(config, base, ops.parse_size(size), step)
    finally:
        sites.stop()
    console.print(
        f"\nDone in {time.monotonic() - started:.0f} s. Everything is in {base}; "
        f"run the sites again with [bold]ferry up --topology {base / 'topology.yaml'}[/]."
    )


def _workflow(config: Config, base: Path, size: int, step: _Steps) -> None:
    url = {name: config.site(name).url for name in SITES}
    central, dcn0, dcn1 = (ImageClient(url[n]) for n in SITES)
    src = base / "cirros.raw"
    data = _make_image_file(src, size)

    step(
        "Upload an image at central",
        f"A {ops.format_size(size)} raw disk image holding {ops.format_size(data)} of data. "
        "It streams into central's default store, default_backend; zeros are never stored.",
        f"glance --os-image-url {url['central']} image-create --name cirros "
        f"--disk-format raw --container-format bare --file {src}",
    )
    image = central.create(name="cirros", disk_format="raw", container_format="bare")
    image_id = image["id"]
    with transfer_bar("upload cirros", size, console) as bar:
        central.upload(image_id, src, progress=lambda n: bar(n, size))
    _show_stores(central, image_id, "central")

    step(
        "Copy it to the edge sites dcn0 and dcn1",
        "central's API has a store on each edge cluster. One copy-image reads the image once "
        "and writes both edges at the same time, sending only its data, then checks sha512.",
        f"glance --os-image-url {url['central']} image-import {image_id} "
        "--import-method copy-image --stores dcn0,dcn1",
    )
    _copy(central, image_id, ["dcn0", "dcn1"])

    step(
        "The image's stores and locations, from central's API and from dcn1's",
        "Every site serves the one catalogue. Each names stores its own way: central's "
        "default_backend is the 'central' store at the edges.",
        f"glance --os-image-url {url['dcn1']} image-show {image_id}",
    )
    for name, client in (("central", central), ("dcn1", dcn1)):
        _locations(client.get(image_id), name)

    step(
        "Each site's images pool",
        "The image is a block image with a protected snapshot 'snap' in every cluster: what "
        "Nova and Cinder clone from, copy-on-write, without crossing the WAN.",
        "rbd --cluster dcn0 -p images ls -l",
    )
    for name in SITES:
        _ls(config, name, "images")

    step(
        "Download at dcn1: it reads dcn1's own store",
        "A site reads from its own cluster when that holds the image, so nothing crosses the "
        "WAN. The counters come from each site's /metrics.",
        f"glance --os-image-url {url['dcn1']} image-download {image_id} --file cirros.out",
    )
    before = dcn1.traffic()["read"]
    with open(os.devnull, "wb") as sink, transfer_bar("download", size, console) as bar:
        dcn1.download(image_id, sink, progress=lambda n: bar(n, size))
    after = dcn1.traffic()["read"]
    console.print(
        "  dcn1 read "
        + ", ".join(f"{ops.format_size(after[c] - before[c])} from {c}" for c in sorted(after))
    )

    step(
        "Boot at dcn0: a volume and an instance disk, both clones",
        "A volume (volumes/volume-<id>) and an instance's root disk (vms/<id>_disk) are "
        "copy-on-write clones of images/<image-id>@snap in dcn0's own cluster: made in constant "
        "time, nothing copied, nothing crossing the WAN.",
        "openstack volume create --image cirros --size 1 --availability-zone dcn0 vol0\n"
        "openstack server create --image cirros --availability-zone dcn0 vm1",
    )
    vol0 = dcn0.create_volume(name="vol0", imageRef=image_id, size=1)
    vm1 = dcn0.create_server(name="vm1", imageRef=image_id)
    vm0 = dcn0.create_server(name="vm0", volume_id=vol0["id"])
    snap0 = dcn0.create_snapshot(vol0["id"], name="snap0", force=True)
    console.print(
        f"  volume vol0 {vol0['id']}: {vol0['status']}, bootable {vol0['bootable']}\n"
        f"  server vm1 {vm1['id']}: {vm1['status']}, disk {vm1['ferry']['disk']}\n"
        f"  server vm0 {vm0['id']}: {vm0['status']}, boots from vol0 (now in-use)\n"
        f"  snapshot snap0 of the in-use vol0 (--force): volume-{vol0['id']}@snapshot-"
        f"{snap0['id']}"
    )
    _ls(config, "dcn0", "volumes", "vms")

    step(
        "Snapshot the instance at dcn0 into a new image",
        "The guest has written to its disk. Its snapshot becomes an image in dcn0's store "
        "only, as at a DCN site, with md5 and sha512 computed on the way.",
        "openstack --os-compute-api-version 2.1 server image create --name vm1-snapshot vm1",
    )
    _guest_writes(config, "dcn0", ImageSpec("vms", f"{vm1['id']}_disk"), 0)
    snapshot_id = dcn0.create_server_image(vm1["id"], "vm1-snapshot")
    _show_stores(dcn0, snapshot_id, "dcn0")

    step(
        "Copy the snapshot back to central, then from central to dcn1, and boot it there",
        "dcn0's API copies into its 'central' store; central's API then copies from its own "
        "cluster to dcn1, so the WAN link dcn0 → dcn1 is never needed. At dcn1 the new "
        "instance is again a clone.",
        f"glance --os-image-url {url['dcn0']} image-import {snapshot_id} "
        f"--import-method copy-image --stores central\n"
        f"glance --os-image-url {url['central']} image-import {snapshot_id} "
        f"--import-method copy-image --stores dcn1\n"
        f"openstack server create --image vm1-snapshot --availability-zone dcn1 vm2",
    )
    _copy(dcn0, snapshot_id, ["central"])
    _copy(central, snapshot_id, ["dcn1"])
    _show_stores(dcn1, snapshot_id, "dcn1")
    dcn1.create_server(name="vm2", imageRef=snapshot_id)
    _ls(config, "dcn1", "vms")

    step(
        "Boot at dcn1 an image that was never copied there",
        "ferry copies it into dcn1's store once (one WAN transfer), then clones; the second "
        "boot moves nothing. (Set compute.missing_image to stream or refuse for Nova's ways.)",
        "openstack server create --image fedora --availability-zone dcn1 vm3   # twice",
    )
    small = size // 4
    _make_image_file(base / "fedora.raw", small)
    fedora = central.create(name="fedora", disk_format="raw", container_format="bare")
    central.upload(fedora["id"], base / "fedora.raw")
    for name in ("vm3", "vm4"):
        server = dcn1.create_server(name=name, imageRef=fedora["id"])
        how = server["ferry"]["image_source"]
        console.print(
            f"  {name}: image {how['action']} into store {how['store']}, "
            f"{ops.format_size(how['moved'])} moved"
        )
    _show_stores(dcn1, fedora["id"], "dcn1")

    step(
        "Back up vol0 to central, then incrementally",
        "Backups live in central's backups pool. The first copies the volume's data; the next "
        "only the extents changed since (here 4 MiB the guest wrote). Each restores alone.",
        "openstack volume backup create --force vol0   # twice\n"
        "openstack volume backup restore BACKUP",
    )
    first = central.create_backup(vol0["id"], name="monday", force=True)
    _guest_writes(config, "dcn0", ImageSpec("volumes", f"volume-{vol0['id']}"), 64 << 20)
    second = central.create_backup(vol0["id"], name="tuesday", force=True)
    for backup in (first, second):
        kind = "incremental" if backup["is_incremental"] else "full"
        console.print(
            f"  backup {backup['name']}: {kind}, {ops.format_size(backup['ferry']['moved'])} "
            "read from dcn0"
        )
    restored = central.restore_backup(second["id"], name="vol0-restored")
    console.print(f"  restored into volume {restored['volume_id']} at dcn0")
    _ls(config, "central", "backups")

    step(
        "Bytes moved between sites",
        "What each site read from or wrote to another site's cluster, from /metrics.",
        f"curl {url['central']}/metrics",
    )
    _summary(config, naive=2 * size + 2 * size + small)
    for client in (central, dcn0, dcn1):
        client.close()


def _guest_writes(config: Config, site: str, spec: ImageSpec, offset: int) -> None:
    """What a running guest would do: write 4 MiB into its disk."""
    cluster = connect(config.clusters[site].target)
    try:
        with cluster.open(spec) as disk:
            disk.write(offset, os.urandom(4 << 20))
    finally:
        cluster.close()


def _ls(config: Config, site: str, *pools: str) -> None:
    """``rbd ls -l`` of a site's pools: each clone's PARENT shows where it reads from."""
    cluster = connect(config.clusters[site].target)
    try:
        for pool in pools:
            console.print(f"[bold]{site}[/] {pool}")
            console.print(ops.render_ls(ops.ls_long(cluster, pool)), markup=False)
    finally:
        cluster.close()


def _copy(client: ImageClient, image_id: str, stores: list[str]) -> None:
    client.import_image(image_id, "copy-image", stores=stores)
    total = client.get(image_id).get("size")
    with transfer_bar(f"copy to {', '.join(stores)}", total, console) as bar:
        client.wait(image_id, stores, progress=bar)
    console.print(f"  copied to {', '.join(stores)}")


def _show_stores(client: ImageClient, image_id: str, site: str) -> None:
    image = client.get(image_id)
    console.print(f"  image {image_id} at {site}: stores [bold]{image.get('stores')}[/]")


def _locations(image: dict[str, Any], site: str) -> None:
    table = Table(title=f"image {image['id']} seen from {site}")
    table.add_column("store")
    table.add_column("location")
    for loc in image.get("locations", []):
        table.add_row(loc["metadata"].get("store", ""), loc["url"])
    console.print(table)


def _summary(config: Config, naive: int) -> None:
    moved: dict[tuple[str, str], int] = {}
    for site in SITES:
        own = config.own_cluster(site)
        with ImageClient(config.site(site).url) as client:
            traffic = client.traffic()
        for cluster, n in traffic["written"].items():
            if cluster != own:
                moved[site, cluster] = moved.get((site, cluster), 0) + n
        for cluster, n in traffic["read"].items():
            if cluster != own:
                moved[cluster, site] = moved.get((cluster, site), 0) + n
    table = Table()
    for column in ("from", "to", "bytes"):
        table.add_column(column)
    for (src, dst), n in sorted(moved.items()):
        if n:
            table.add_row(src, dst, ops.format_size(n))
    total = sum(moved.values())
    console.print(table)
    console.print(
        f"  {ops.format_size(total)} crossed between sites for five copies and two backups. "
        f"Copies that send every byte of the image, as Glance's copy-image does, would have "
        f"sent "
        f"{ops.format_size(naive)}: ferry sends only the data, never zeros, and reads no "
        f"image twice."
    )


def _make_image_file(path: Path, size: int) -> int:
    """A sparse 'disk image': random data in a tenth of it, zeros elsewhere; its data bytes."""
    piece = 1 << 20
    count = max(1, size // piece // 10)
    with open(path, "wb") as f:
        f.truncate(size)
        for i in range(count):
            f.seek(i * (size // count))
            f.write(os.urandom(piece))
    return count * piece


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Steps:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, title: str, why: str, command: str) -> None:
        self.n += 1
        console.print()
        console.print(Rule(f"[bold]{self.n}. {title}", align="left"))
        console.print(why)
        for line in command.splitlines():
            console.print(f"$ {line}", style="dim", markup=False)
