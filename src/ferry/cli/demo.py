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
from ferry.block import connect, ops
from ferry.cli.progress import transfer_bar
from ferry.cli.up import site_table
from ferry.client import ImageClient
from ferry.config import Config

console = Console(highlight=False)
SITES = ("central", "dcn0", "dcn1")


def demo(
    workdir: Annotated[
        Path | None,
        typer.Option("--dir", help="Keep the demo's sites here (default: a temp dir)."),
    ] = None,
    size: Annotated[str, typer.Option(help="Size of the demo image.")] = "512M",
) -> None:
    """Upload an image at central, copy it to two edge sites, snapshot at an edge, copy back."""
    base = (workdir or Path(tempfile.mkdtemp(prefix="ferry-demo-"))).resolve()
    base.mkdir(parents=True, exist_ok=True)
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
    (base / "topology.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
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
        cluster = config.clusters[name]
        handle = connect(cluster.target)
        try:
            console.print(f"[bold]{name}[/] ({cluster.embedded})")
            console.print(ops.render_ls(ops.ls_long(handle, "images")), markup=False)
        finally:
            handle.close()

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
        "Snapshot an instance at dcn0",
        "The snapshot becomes a new image in dcn0's store only. (Here it is uploaded at dcn0's "
        "API; instances arrive with volumes in a later release.)",
        f"openstack --os-image-url {url['dcn0']} server image create --name snap vm1",
    )
    snap = _make_image_file(base / "snap.raw", size // 2)
    snapshot = dcn0.create(name="vm1-snapshot", disk_format="raw", container_format="bare")
    with transfer_bar("snapshot", size // 2, console) as bar:
        dcn0.upload(snapshot["id"], base / "snap.raw", progress=lambda n: bar(n, size // 2))
    console.print(f"  {ops.format_size(snap)} of data")
    _show_stores(dcn0, snapshot["id"], "dcn0")

    step(
        "Copy the snapshot back to central, then from central to dcn1",
        "dcn0's API copies into its 'central' store; central's API then copies from its own "
        "cluster to dcn1, so the WAN link dcn0 → dcn1 is never needed.",
        f"glance --os-image-url {url['dcn0']} image-import {snapshot['id']} "
        f"--import-method copy-image --stores central\n"
        f"glance --os-image-url {url['central']} image-import {snapshot['id']} "
        f"--import-method copy-image --stores dcn1",
    )
    _copy(dcn0, snapshot["id"], ["central"])
    _copy(central, snapshot["id"], ["dcn1"])
    _show_stores(dcn1, snapshot["id"], "dcn1")

    step(
        "Bytes moved between sites",
        "What each site read from or wrote to another site's cluster, from /metrics.",
        f"curl {url['central']}/metrics",
    )
    _summary(config, naive=2 * size + 2 * (size // 2))
    for client in (central, dcn0, dcn1):
        client.close()


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
    table = Table()
    for column in ("from", "to", "bytes"):
        table.add_column(column)
    total = 0
    for site in SITES:
        own = config.own_cluster(site)
        with ImageClient(config.site(site).url) as client:
            moved = client.traffic()
        for cluster, n in moved["written"].items():
            if cluster != own and n:
                table.add_row(site, cluster, ops.format_size(n))
                total += n
        for cluster, n in moved["read"].items():
            if cluster != own and n:
                table.add_row(cluster, site, ops.format_size(n))
                total += n
    console.print(table)
    console.print(
        f"  {ops.format_size(total)} crossed between sites for four copies. A copy that sends "
        f"every byte of the image, as Glance's copy-image does, would have sent "
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
