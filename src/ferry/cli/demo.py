"""``ferry demo``: the block layer's whole workflow on an embedded cluster, no setup."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.rule import Rule

from ferry.block import ImageSpec, ops
from ferry.block.embedded import EmbeddedCluster

console = Console(highlight=False)


def _make_image_file(path: Path, size: int) -> int:
    """A sparse 'disk image': a few MiB of random data scattered over ``size`` bytes."""
    written = 0
    with open(path, "wb") as f:
        f.truncate(size)
        for i in range(8):
            f.seek(i * size // 8)
            f.write(os.urandom(1 << 20))
            written += 1 << 20
    return written


def demo(
    workdir: Annotated[
        Path | None,
        typer.Option("--dir", help="Keep the demo's cluster here (default: a temp dir)."),
    ] = None,
    size: Annotated[str, typer.Option(help="Size of the demo image.")] = "1G",
) -> None:
    """Import an image, snapshot it, clone disks and volumes from it, and look at the pools."""
    base = workdir or Path(tempfile.mkdtemp(prefix="ferry-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    step = _Steps()

    step("Create an embedded cluster 'central' (a directory)")
    EmbeddedCluster.init(base / "central", "central")
    cluster = EmbeddedCluster.connect(base / "central")
    console.print(
        f"  {base / 'central'}: fsid {cluster.fsid}, pools {', '.join(cluster.list_pools())}"
    )

    step("Import a disk image (sparse: zero ranges are neither read nor stored)")
    nbytes = ops.parse_size(size)
    src = base / "cirros.raw"
    data = _make_image_file(src, nbytes)
    image_id = str(uuid.uuid4())
    t = time.perf_counter()
    moved = ops.import_file(cluster, src, ImageSpec("images", image_id))
    console.print(
        f"  images/{image_id}: {ops.format_size(nbytes)} image, {ops.format_size(data)} of data, "
        f"{ops.format_size(moved.written)} stored in {time.perf_counter() - t:.2f} s"
    )

    step("Snapshot it as Glance does: images/<id>@snap, protected")
    with cluster.open(ImageSpec("images", image_id)) as image:
        image.create_snap("snap")
        image.protect_snap("snap")

    step("Boot an instance and create a volume: copy-on-write clones, constant time")
    parent = ImageSpec("images", image_id, "snap")
    instance = str(uuid.uuid4())
    volume = f"volume-{uuid.uuid4()}"
    for pool, name in (("vms", f"{instance}_disk"), ("volumes", volume)):
        t = time.perf_counter()
        cluster.clone(parent, pool, name)
        console.print(f"  {pool}/{name}: cloned in {(time.perf_counter() - t) * 1000:.1f} ms")
    with cluster.open(ImageSpec("volumes", volume)) as vol:
        vol.resize(2 * nbytes)
        vol.write(0, b"written by the instance".ljust(4096, b"\0"))
        provisioned, used = ops.du(vol)
        console.print(
            f"  {volume} resized to {ops.format_size(provisioned)}, wrote 4 KiB: "
            f"it owns {ops.format_size(used)}; the rest reads from its parent"
        )

    for pool in ("images", "vms", "volumes"):
        step(f"ferry block ls -l {pool}")
        console.print(ops.render_ls(ops.ls_long(cluster, pool)))

    step("Try to unprotect the parent snapshot while clones exist")
    with cluster.open(ImageSpec("images", image_id)) as image:
        try:
            image.unprotect_snap("snap")
        except Exception as exc:
            console.print(f"  refused: {exc}")
        console.print(f"  children: {', '.join(map(str, image.children('snap')))}")

    step("Check the cluster: every chunk's hash and every reference")
    report = cluster.check()
    console.print(
        f"  {report.images} block images, {report.chunks} chunks: "
        + ("clean" if report.ok else "; ".join(report.errors))
    )
    console.print(
        f"\nThe cluster stays in {base}; explore it with "
        f"'ferry block --cluster {base / 'central'} ls -l images'."
    )


class _Steps:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, title: str) -> None:
        self.n += 1
        console.print(Rule(f"[bold]{self.n}. {title}", align="left"))
