"""Block layer benchmark: import vs cp+sync, clone time vs size, on-disk size vs data.

Run: ``.venv/bin/python bench/bench_block.py [--dir DIR] [--size 1G] [--runs 3]``.
Every figure is printed next to its reference measured in the same run on the same disk;
the machine is shared and noisy, so each timing is the median of several runs.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ferry.block import ImageSpec, ops
from ferry.block.embedded import EmbeddedCluster
from table import print_table

MiB = 1 << 20
PIECE = 32 * MiB


def make_random(path: Path, size: int) -> int:
    with open(path, "wb") as f:
        for _ in range(0, size, PIECE):
            f.write(os.urandom(PIECE))
        f.flush()
        os.fsync(f.fileno())
    return size


def make_mostly_zero(path: Path, size: int, fraction: float = 0.02) -> int:
    """1 MiB random pieces at random 1 MiB-aligned places, about ``fraction`` of the file."""
    rng = random.Random(42)  # noqa: S311 - places data, not secrets
    pieces = sorted(rng.sample(range(size // MiB), max(1, int(size * fraction) // MiB)))
    with open(path, "wb") as f:
        f.truncate(size)
        for p in pieces:
            f.seek(p * MiB)
            f.write(os.urandom(MiB))
        f.flush()
        os.fsync(f.fileno())
    return len(pieces) * MiB


def timed(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def allocated(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def bench_import(work: Path, size: int, runs: int) -> list[tuple[str, str, str, str]]:
    rows = []
    for label, make in (("random", make_random), ("mostly-zero", make_mostly_zero)):
        src = work / f"{label}.raw"
        data = make(src, size)
        dst = work / "cp.out"

        def cp(src: Path = src, dst: Path = dst) -> None:
            dst.unlink(missing_ok=True)
            subprocess.run(["cp", "--sparse=auto", str(src), str(dst)], check=True)
            subprocess.run(["sync"], check=True)

        cluster = work / "cluster"

        def fresh_cluster(cluster: Path = cluster) -> None:
            shutil.rmtree(cluster, ignore_errors=True)
            EmbeddedCluster.init(cluster, "bench")
            subprocess.run(["sync"], check=True)

        def ferry_import(src: Path = src, label: str = label, cluster: Path = cluster) -> None:
            subprocess.run(
                [sys.executable, "-m", "ferry", "block", "--cluster", str(cluster),
                 "import", str(src), f"images/{label}"],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip

        t_cp, t_ferry = [], []
        for _ in range(runs):  # alternate, so both see the same machine load
            t_cp.append(timed(cp, 1))
            fresh_cluster()
            t_ferry.append(timed(ferry_import, 1))
        t_cp, t_ferry = statistics.median(t_cp), statistics.median(t_ferry)
        on_disk = allocated(work / "cluster" / "chunks")
        rows.append(
            (
                f"import {ops.format_size(size)} {label}",
                f"{t_ferry:.2f} s",
                f"cp+sync {t_cp:.2f} s",
                f"{t_ferry / t_cp:.2f}x cp+sync time",
            )
        )
        if label == "mostly-zero":
            rows.append(
                (
                    "on-disk size, mostly-zero",
                    ops.format_size(on_disk),
                    f"non-zero data {ops.format_size(data)}",
                    f"{on_disk / data:.3f}x data ({(on_disk - data) / data:+.2%})",
                )
            )
        src.unlink()
        dst.unlink(missing_ok=True)
    return rows


def bench_clone(work: Path, runs: int) -> list[tuple[str, str, str, str]]:
    root = work / "clones"
    shutil.rmtree(root, ignore_errors=True)
    EmbeddedCluster.init(root, "bench")
    cluster = EmbeddedCluster.connect(root)
    results = {}
    for gib in (1, 64):
        name = f"img{gib}g"
        size = gib << 30
        cluster.create("images", name, size)
        with cluster.open(ImageSpec("images", name)) as image:
            for i in range(16):  # some data spread over the whole image
                image.write(i * (size // 16), os.urandom(MiB))
            image.create_snap("snap")
            image.protect_snap("snap")
        parent = ImageSpec("images", name, "snap")
        clones = (f"{name}-{i}" for i in range(10_000))

        def clone(parent: ImageSpec = parent, clones: Iterator[str] = clones) -> None:
            cluster.clone(parent, "vms", next(clones))

        results[gib] = timed(clone, runs * 10)
    return [
        (
            "clone 1 GiB vs 64 GiB",
            f"{results[1] * 1000:.1f} ms / {results[64] * 1000:.1f} ms",
            "target < 100 ms, equal",
            f"{results[64] / results[1]:.2f}x (64 GiB / 1 GiB)",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="work dir (default: /var/tmp)")
    parser.add_argument("--size", default="1G")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-", dir=args.dir or "/var/tmp"))
    try:
        rows = bench_import(work, ops.parse_size(args.size), args.runs)
        rows += bench_clone(work, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows)


if __name__ == "__main__":
    main()
