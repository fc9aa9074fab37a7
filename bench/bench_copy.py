"""Cross-cluster copy benchmark: ferry's extent-aware copy vs a naive full copy.

Copies a 1 GiB block image holding ten random 4 MiB objects and 8 MiB of explicitly written
zeros from cluster central to cluster dcn0, on real Ceph clusters and on embedded clusters,
and prints bytes moved against the image size and time against a naive copy (read and write
every object) of the same image, measured in the same run. Both copies are verified by
sha256 of the whole destination.

Run: ``.venv/bin/python bench/bench_copy.py [--central CONF --dcn0 CONF] [--runs 3]``.
Without confs it starts two Ceph clusters with ``scripts/ceph-dev-cluster`` and purges them
afterwards; with ``--no-ceph`` it measures embedded clusters only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ferry.block import Cluster, ImageSpec, connect, ops
from ferry.block.embedded import EmbeddedCluster
from table import print_table

MiB = 1 << 20
OBJ = 4 * MiB
SIZE = 1 << 30
ROOT = Path(__file__).resolve().parent.parent


def naive_copy(src: Cluster, spec: ImageSpec, dst: Cluster, name: str) -> int:
    """What a copy that knows nothing of extents does: every object read and written."""
    dst.create(spec.pool, name, SIZE)
    with src.open(spec) as a, dst.open(ImageSpec(spec.pool, name)) as b:
        for off in range(0, SIZE, OBJ):
            b.write(off, a.read(off, OBJ))
    return SIZE


def sha256(cluster: Cluster, spec: ImageSpec) -> str:
    h = hashlib.sha256()
    with cluster.open(spec) as image:
        for off in range(0, SIZE, 32 * MiB):
            h.update(image.read(off, 32 * MiB))
    return h.hexdigest()


def make_source(cluster: Cluster, name: str) -> tuple[ImageSpec, int]:
    spec = ImageSpec("images", name)
    cluster.create("images", name, SIZE)
    with cluster.open(spec) as image:
        for i in range(10):
            image.write(i * 97 * OBJ % SIZE, os.urandom(OBJ))
        image.write(200 * OBJ, bytes(2 * OBJ))  # explicit zeros: never to be moved
        image.create_snap("snap")
        data = sum(e.length for e in image.diff() if e.exists)
    return ImageSpec("images", name, "snap"), data


def measure(label: str, src: Cluster, dst: Cluster, runs: int) -> list[tuple[str, ...]]:
    tag = f"bench-{os.getpid()}"
    source, data = make_source(src, tag)
    want = sha256(src, source)
    moved: list[int] = []
    t_ferry: list[float] = []
    t_naive: list[float] = []

    for r in range(runs):  # alternate, so both see the same machine load
        name = f"{tag}-ferry-{r}"
        with src.open(source) as image:
            t = time.perf_counter()
            moved.append(ops.copy_image(image, dst, "images", name).written)
            t_ferry.append(time.perf_counter() - t)
        assert sha256(dst, ImageSpec("images", name)) == want
        dst.remove("images", name)
        naive = f"{tag}-naive-{r}"
        t = time.perf_counter()
        naive_copy(src, source, dst, naive)
        t_naive.append(time.perf_counter() - t)
        assert sha256(dst, ImageSpec("images", naive)) == want
        dst.remove("images", naive)
    with src.open(ImageSpec("images", tag)) as image:
        image.remove_snap("snap")
    src.remove("images", tag)
    tf, tn = statistics.median(t_ferry), statistics.median(t_naive)
    return [
        (
            f"{label}: bytes moved",
            ops.format_size(moved[0]),
            f"image {ops.format_size(SIZE)}, data {ops.format_size(data)}",
            f"{moved[0] / SIZE:.3f}x size, {moved[0] / data:.3f}x data",
        ),
        (
            f"{label}: copy time",
            f"{tf:.2f} s",
            f"naive full copy {tn:.2f} s",
            f"{tf / tn:.2f}x naive ({tn / tf:.1f}x faster)",
        ),
    ]


@contextlib.contextmanager
def ceph_pair(args: argparse.Namespace) -> Iterator[tuple[Path, Path] | None]:
    if args.no_ceph:
        yield None
        return
    if args.central and args.dcn0:
        yield args.central, args.dcn0
        return
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-ceph-", dir="/var/tmp"))
    script = ROOT / "scripts" / "ceph-dev-cluster"
    confs = []
    try:
        for name, port in (("central", 18789), ("dcn0", 18839)):
            out = subprocess.run(
                [script, "start", name, str(port), str(work / name)],
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            confs.append(Path(out.split("conf=")[1].splitlines()[0]))
        yield confs[0], confs[1]
    finally:
        for name in ("central", "dcn0"):
            subprocess.run([script, "purge", str(work / name)], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--central", type=Path)
    parser.add_argument("--dcn0", type=Path)
    parser.add_argument("--no-ceph", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[str, ...]] = []
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-", dir="/var/tmp"))
    try:
        for name in ("central", "dcn0"):
            EmbeddedCluster.init(work / name, name)
        src = EmbeddedCluster.connect(work / "central")
        dst = EmbeddedCluster.connect(work / "dcn0")
        rows += measure("embedded", src, dst, args.runs)
        with ceph_pair(args) as confs:
            if confs:
                rows += measure(
                    "ceph", connect(f"ceph:{confs[0]}"), connect(f"ceph:{confs[1]}"), args.runs
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows)


if __name__ == "__main__":
    main()
