"""copy-image benchmark: ferry's import job to one and to two stores vs a plain copy.

For a 1 GiB random image and a 1 GiB mostly-zero one (1 MiB of data in every 50), uploaded
to store default_backend: times copy-image (the whole job: claim, transfer, sha512
verification, locations) to dcn0 alone and to dcn0 + dcn1 together, and, as the reference
measured in the same run, one plain sequential read + write of every byte of the image into
a fresh block image. Prints the bytes read and written per store against the image's
non-zero data.

Embedded clusters by default; ``--ceph CENTRAL DCN0 DCN1`` (three ceph confs, as
scripts/ceph-dev-cluster prints) measures real Ceph clusters.

Run: ``.venv/bin/python bench/bench_import.py [--size 1G] [--ceph C D0 D1]``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ferry.block import ImageSpec, ops
from ferry.block.embedded import EmbeddedCluster
from ferry.catalog import Catalog
from ferry.config import parse
from ferry.images.imports import Imports
from ferry.images.service import ImageService
from ferry.images.stores import Store, Stores
from table import print_table

MiB = 1 << 20
STORES = ("default_backend", "dcn0", "dcn1")
Row = dict[str, Any]


def chunks(size: int, kind: str) -> list[bytes]:
    """The image as 8 MiB batches (random bytes reused: made once, never compressible)."""
    noise = os.urandom(8 * MiB)
    if kind == "random":
        return [n.to_bytes(16, "big") + noise[16:] for n in range(size // (8 * MiB))]
    rng = random.Random(7)  # noqa: S311 - places data, not secrets
    image = bytearray(size)
    for _ in range(size // MiB // 50):
        pos = rng.randrange(size // MiB) * MiB
        image[pos : pos + MiB] = noise[:MiB]
    return [bytes(image[p : p + 8 * MiB]) for p in range(0, size, 8 * MiB)]


def nonzero(batches: list[bytes], grain: int = 64 << 10) -> int:
    zero = bytes(grain)
    return sum(grain for b in batches for p in range(0, len(b), grain) if b[p : p + grain] != zero)


def plain_copy(source: Store, dest: Store, image_id: str, size: int) -> float:
    """The reference: read every byte of the image and write every byte, in order."""
    name = f"plain-{image_id}"
    dest.cluster.create("images", name, size)
    t = time.perf_counter()
    with source.open_snap(image_id) as src, dest.cluster.open(ImageSpec("images", name)) as dst:
        for pos in range(0, size, 8 * MiB):
            dst.write(pos, src.read(pos, 8 * MiB))
    elapsed = time.perf_counter() - t
    dest.cluster.remove("images", name)
    return elapsed


def copy(service: ImageService, imports: Imports, image_id: str, stores: list[str]) -> Row:
    task = imports.request(image_id, {"method": {"name": "copy-image"}, "stores": stores})
    t = time.perf_counter()
    imports.run_next("bench")
    elapsed = time.perf_counter() - t
    done = service.catalog.get_task(task.id)
    assert done.status == "success", done.message
    for store_id in stores:
        service.delete_from_store(store_id, image_id)
    return {"time": elapsed, **(done.checkpoint or {})}


def measure(
    service: ImageService, imports: Imports, kind: str, size: int, runs: int
) -> list[tuple[str, ...]]:
    batches = chunks(size, kind)
    data = nonzero(batches)
    record = service.create({"name": kind, "disk_format": "raw", "container_format": "bare"})
    upload = service.start_upload(record.id, None, size)
    for b in batches:
        upload.feed(b)
    upload.finish()
    source, dcn0 = service.stores.default, service.stores.get("dcn0")
    assert dcn0 is not None
    one: list[Row] = []
    two: list[Row] = []
    plain: list[float] = []
    for _ in range(runs):  # interleaved, so all three see the same machine load
        plain.append(plain_copy(source, dcn0, record.id, size))
        one.append(copy(service, imports, record.id, ["dcn0"]))
        two.append(copy(service, imports, record.id, ["dcn0", "dcn1"]))
    service.delete(record.id)
    t_plain = statistics.median(plain)
    t_one = statistics.median(r["time"] for r in one)
    t_two = statistics.median(r["time"] for r in two)
    last = two[-1]
    gib = ops.format_size(size)
    return [
        (f"{kind} {gib}: to 2 stores", f"{t_two:.2f} s", f"plain read+write {t_plain:.2f} s",
         f"{t_two / t_plain:.2f}x plain"),
        (f"{kind} {gib}: 2 stores vs 1", f"{t_two:.2f} s", f"1 store {t_one:.2f} s",
         f"{t_two / t_one:.2f}x one store"),
        (f"{kind} {gib}: read from source", ops.format_size(last["read"]),
         f"non-zero data {ops.format_size(data)}", f"{last['read'] / data:.3f}x data"),
        *[(f"{kind} {gib}: written to {s}", ops.format_size(n),
           f"non-zero data {ops.format_size(data)}", f"{n / data:.3f}x data")
          for s, n in sorted(last["written"].items())],
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="1G")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ceph", nargs=3, metavar=("CENTRAL", "DCN0", "DCN1"), type=Path)
    args = parser.parse_args()
    size = ops.parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="ferry-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        clusters: dict[str, dict[str, str]] = {}
        for n, store_id in enumerate(STORES):
            if args.ceph:
                clusters[store_id] = {"ceph": str(args.ceph[n])}
            else:
                EmbeddedCluster.init(work / store_id, store_id)
                clusters[store_id] = {"embedded": str(work / store_id)}
        stores = [{"id": s, "cluster": s, "default": s == "default_backend"} for s in STORES]
        config = parse({"catalog": f"sqlite:///{work / 'catalog.db'}", "clusters": clusters,
                        "sites": {"central": {"stores": stores}}})  # fmt: skip
        site_stores = Stores(config, "central")
        catalog = Catalog(config.catalog, site_stores.catalog_keys)
        catalog.migrate()
        service = ImageService(catalog, site_stores, "bench")
        imports = Imports(service, "central", config.site("central").imports)
        where = "ceph" if args.ceph else "embedded"
        print(f"copy-image on {where} clusters, median of {args.runs} runs")
        rows = [("what", "measured", "reference", "ratio")]
        for kind in ("random", "mostly-zero"):
            rows += measure(service, imports, kind, size, args.runs)
        print_table(rows)
        service.stores.close()
        catalog.close()


if __name__ == "__main__":
    main()
