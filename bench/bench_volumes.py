"""Volume and instance-disk creation benchmark: time against image size, against a bare clone.

For a 1 GiB and a 64 GiB raw image in central's default store, times
``VolumeService.create_volume(image_id=..., size=...)`` and ``create_server(image_id=...)``
(the storage side of ``openstack volume create --image`` and ``server create``) and, as the
reference measured in the same run, a bare ``Cluster.clone`` of the same ``images/<id>@snap``:
the block layer's floor. DESIGN's target: constant whatever the image's size, under 100 ms on
embedded clusters. Each figure is the median and p90 of ``--runs`` creations, after one
untimed warm-up; what they make is kept until the last run, then deleted in parallel
(removing a 64 GiB clone from a Ceph cluster without object-map deletes every one of its
16384 objects: seconds each, most of the bench's time on Ceph).

The images are made cheaply: a sparse block image of the full size with a few MiB of data,
snapshotted and protected as an upload leaves it, and recorded active in the catalogue (an
upload of 64 GiB would spend minutes hashing zeros).

Embedded clusters always; real Ceph too when FERRY_TEST_CEPH_CENTRAL, FERRY_TEST_CEPH_DCN0
and FERRY_TEST_CEPH_DCN1 name the test clusters' confs (as scripts/ceph-dev-cluster prints).

Run: ``.venv/bin/python bench/bench_volumes.py [--runs 20]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ferry import topology
from ferry.block.auth import read_keyring
from ferry.catalog import Catalog
from ferry.config import Config, parse
from ferry.errors import FerryError
from ferry.images.imports import Imports
from ferry.images.service import ImageService
from ferry.images.stores import SNAP, Stores
from ferry.volumes import VolumeService
from table import print_table

MiB, GiB = 1 << 20, 1 << 30
SITES = ("central", "dcn0", "dcn1")
SIZES = (1, 64)  # GiB
OPS = ("clone", "volume", "server disk")


def ceph_confs() -> dict[str, Path] | None:
    """The test clusters' confs from the environment; None when none is set."""
    confs = {n: os.environ.get(f"FERRY_TEST_CEPH_{n.upper()}") for n in SITES}
    if not any(confs.values()):
        return None
    missing = [f"FERRY_TEST_CEPH_{n.upper()}" for n, c in confs.items() if not c]
    if missing:
        raise SystemExit(f"set {', '.join(missing)} too, or none of them")
    return {n: Path(c) for n, c in confs.items() if c}


def config(data: Path, ceph: dict[str, Path] | None) -> Config:
    """The guide's topology (ferry.topology.example), its clusters embedded or Ceph."""
    raw = topology.example(data)
    for name, conf in (ceph or {}).items():
        raw["clusters"][name] = {"ceph": str(conf)}
        keyring = conf.with_name(f"{name}.client.external.keyring")
        raw["clients"]["external"][name]["key"] = read_keyring(keyring, "external")
    for site in raw["sites"].values():
        site["imports"]["workers"] = 0
    parsed = parse(raw)
    topology.provision(parsed)
    return parsed


def central(cfg: Config) -> VolumeService:
    stores = Stores(cfg, "central")
    catalog = Catalog(cfg.catalog, stores.catalog_keys)
    catalog.migrate()
    images = ImageService(catalog, stores, cfg.owner)
    return VolumeService(
        cfg, "central", images, Imports(images, "central", cfg.site("central").imports)
    )


def make_image(images: ImageService, size: int) -> str:
    """An active raw image of ``size`` bytes in the default store: ``images/<id>@snap``
    holding 4 MiB of data spread over it, recorded as a finished upload records it."""
    record = images.create({"name": f"bench-{size // GiB}g", "disk_format": "raw",
                            "container_format": "bare"})  # fmt: skip
    store = images.stores.default
    spec = store.spec(record.id, None)
    store.cluster.create(spec.pool, spec.name, size)
    try:
        with store.cluster.open(spec) as image:
            for i in range(4):
                image.write(i * (size // 4), os.urandom(MiB))
            image.create_snap(SNAP)
            image.protect_snap(SNAP)
        images.catalog.add_location(
            record.id,
            store.active_location(record.id),
            expect_status=("queued",),
            fields={"status": "active", "size": size, "virtual_size": size},
        )
    except BaseException:
        with contextlib.suppress(FerryError):
            store.delete(record.id)
        images.delete(record.id)
        raise
    return record.id


Results = dict[tuple[int, str], list[float]]  # (image GiB, operation) -> seconds


def measure(volumes: VolumeService, images: dict[int, str], runs: int) -> Results:
    """Creation times per image size and operation; all made are deleted afterwards.

    Every run makes one of each in a shuffled order, so that neither the machine's drift nor
    what ran just before (warm caches favour an operation that follows itself) falls on one
    case more than another."""
    zone = volumes.zone()
    clones: list[str] = []

    def clone(image_id: str) -> None:
        name = f"bench-clone-{uuid.uuid4().hex[:12]}"
        zone.cluster.clone(zone.store.spec(image_id), "vms", name)
        clones.append(name)

    def make(gib: int, op: str) -> Any:
        if op == "clone":
            return clone(images[gib])
        if op == "volume":
            return volumes.create_volume(image_id=images[gib], size=gib)
        return volumes.create_server(image_id=images[gib])

    cases = [(gib, op) for gib in SIZES for op in OPS]
    times: Results = {case: [] for case in cases}
    made: list[tuple[str, str]] = []
    try:
        for run in range(runs + 1):
            # Unseeded: a fixed order would repeat its own bias in every invocation.
            for case in random.sample(cases, len(cases)):
                t = time.perf_counter()
                record = make(*case)
                elapsed = time.perf_counter() - t
                if record is not None:
                    made.append((case[1], record.id))
                if run:  # run 0 warms up: connections, caches
                    times[case].append(elapsed)
    finally:
        with ThreadPoolExecutor(16) as pool:
            done = [pool.submit(zone.cluster.remove, "vms", name) for name in clones]
            for op, record_id in made:
                delete = volumes.delete_volume if op == "volume" else volumes.delete_server
                done.append(pool.submit(delete, record_id))
        for future in done:
            future.result()  # a failed deletion is reported, not left behind unseen
    return times


def ms(times: list[float]) -> str:
    p90 = statistics.quantiles(times, n=10, method="inclusive")[-1]
    return f"{statistics.median(times) * 1000:.1f} / {p90 * 1000:.1f} ms"


def rows(kind: str, times: Results) -> list[tuple[str, ...]]:
    med = {case: statistics.median(t) for case, t in times.items()}
    out: list[tuple[str, ...]] = []
    for op in OPS[1:]:
        for gib in SIZES:
            out.append((f"{kind}: {op} from {gib} GiB image", ms(times[gib, op]),
                        f"bare clone {ms(times[gib, 'clone'])}",
                        f"{med[gib, op] / med[gib, 'clone']:.1f}x clone"))  # fmt: skip
    target = "equal, < 100 ms" if kind == "embedded" else "equal"
    for op in OPS:
        big, small = med[64, op], med[1, op]
        out.append((f"{kind}: {op}, 64 GiB vs 1 GiB", f"{big * 1000:.1f} / {small * 1000:.1f} ms",
                    f"target {target}", f"{big / small:.2f}x (64 GiB / 1 GiB)"))  # fmt: skip
    return out


@contextlib.contextmanager
def backend(kind: str, ceph: dict[str, Path] | None) -> Iterator[VolumeService]:
    with tempfile.TemporaryDirectory(prefix=f"ferry-bench-{kind}-", dir="/var/tmp") as tmp:
        volumes = central(config(Path(tmp), ceph))
        try:
            yield volumes
        finally:
            volumes.images.stores.close()
            volumes.images.catalog.close()


def bench(kind: str, ceph: dict[str, Path] | None, runs: int) -> list[tuple[str, ...]]:
    with backend(kind, ceph) as volumes:
        images: dict[int, str] = {}
        try:
            for gib in SIZES:
                images[gib] = make_image(volumes.images, gib * GiB)
            return rows(kind, measure(volumes, images, runs))
        finally:
            for image_id in images.values():
                volumes.images.delete(image_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    ceph = ceph_confs()
    print(f"creation time, median / p90 of {args.runs} runs")
    table: list[tuple[str, ...]] = [("what", "median / p90", "reference", "ratio")]
    table += bench("embedded", None, args.runs)
    if ceph:
        table += bench("ceph", ceph, args.runs)
    print_table(table)


if __name__ == "__main__":
    main()
