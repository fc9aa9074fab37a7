"""A three-site ``ferry up`` that tests kill with SIGKILL at named failpoints and restart.

``Crashable.crash(points, action)`` starts the sites with ``FERRY_FAILPOINTS`` armed, runs
``action`` (which loses its connection when the process dies), and requires the process to
have died by SIGKILL: a failpoint that was never reached fails the test. ``settle()``
restarts it unarmed and waits for every import to end and every site to finish two
reconcile passes (one after the other sites' first). ``assert_consistent()`` then checks,
from the clusters themselves, that nothing is stuck, lost or orphaned.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ferry.block import Cluster, ImageSpec, connect
from ferry.block.embedded import EmbeddedCluster
from ferry.catalog import Catalog
from ferry.catalog.owners import TRANSIENT
from ferry.config import parse
from ferry.images.stores import RbdLocation
from tests.test_sites import SITES, write_topology

MiB = 1 << 20
UUID = r"[0-9a-f-]{36}"
PATTERNS = {  # ferry's block image names in each pool, and the record each needs
    "volumes": re.compile(rf"volume-({UUID})"),
    "vms": re.compile(rf"({UUID})_disk"),
    "backups": re.compile(rf"volume-{UUID}\.backup\.{UUID}"),
    "images": re.compile(UUID),
}


@dataclass
class Crashable:
    tmp: Path
    topology: Path
    targets: dict[str, str]  # cluster -> what ferry.block.connect takes
    urls: dict[str, str]
    catalog_url: str
    kind: str  # embedded or ceph
    process: subprocess.Popen[bytes] | None = None

    # --- lifetime --------------------------------------------------------------------------
    def start(self, failpoints: str = "") -> None:
        env = {**os.environ, "FERRY_FAILPOINTS": failpoints}
        log = self.tmp / "up.log"
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ferry", "up", "--topology", str(self.topology)],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while log.read_text().count("Ctrl-C stops every site") < self.starts + 1:
            assert self.process.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.1)
        self.starts += 1

    starts: int = 0

    def crash(self, failpoints: str, action: Callable[[Crashable], object]) -> None:
        """Run ``action`` against sites armed with ``failpoints``; it must kill them."""
        self.start(failpoints)
        with contextlib.suppress(httpx.TransportError):  # the process died under it
            action(self)
        assert self.process is not None
        try:
            code = self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"failpoint {failpoints} was never reached") from None
        assert code == -signal.SIGKILL, f"exit {code}: {self.log()[-3000:]}"

    def settle(self) -> None:
        """Restart unarmed; wait for imports to end and two reconcile passes everywhere."""
        self.start()
        deadline = time.monotonic() + 180
        with Catalog(self.catalog_url) as catalog:
            while catalog.owners.unfinished_tasks():
                assert time.monotonic() < deadline, self.log()[-3000:]
                time.sleep(0.2)
        target = {site: self.passes(site) + 2 for site in SITES}
        while any(self.passes(site) < target[site] for site in SITES):
            assert time.monotonic() < deadline, self.log()[-3000:]
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log(self) -> str:
        return (self.tmp / "up.log").read_text()

    def passes(self, site: str) -> int:
        text = httpx.get(f"{self.urls[site]}/metrics", timeout=10).text
        m = re.search(r"^ferry_reconcile_passes_total\{[^}]*\} (\d+)$", text, re.M)
        assert m, text
        return int(m[1])

    # --- requests --------------------------------------------------------------------------
    def call(self, site: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 120)
        return httpx.request(method, f"{self.urls[site]}{path}", **kwargs)

    def ok(self, site: str, method: str, path: str, **kwargs: Any) -> Any:
        reply = self.call(site, method, path, **kwargs)
        assert reply.status_code < 300, reply.text
        return (
            reply.json()
            if reply.content and "json" in reply.headers.get("content-type", "")
            else None
        )

    def new_image(self, site: str = "central", **fields: Any) -> str:
        body = {"name": "crash", "disk_format": "raw", "container_format": "bare", **fields}
        return str(self.ok(site, "POST", "/v2/images", json=body)["id"])

    def upload(self, site: str, data: bytes, store: str | None = None) -> str:
        image_id = self.new_image(site)
        headers = {"content-type": "application/octet-stream"}
        if store:
            headers["x-image-meta-store"] = store
        self.call(site, "PUT", f"/v2/images/{image_id}/file", content=data, headers=headers)
        return image_id

    def wait_active(self, site: str, image_id: str, stores: set[str]) -> None:
        deadline = time.monotonic() + 120
        while True:
            doc = self.ok(site, "GET", f"/v2/images/{image_id}")
            if doc["status"] == "active" and stores <= set(doc.get("stores", "").split(",")):
                return
            assert time.monotonic() < deadline, doc
            time.sleep(0.2)

    # --- checks ----------------------------------------------------------------------------
    def assert_consistent(self) -> None:
        """``consistent()``, at once on embedded clusters. On Ceph, a block image the killed
        process had open keeps its watch until the OSDs time it out (osd_client_watch_timeout)
        and ``rbd rm`` refuses it until then: the reconciler's next passes remove it."""
        deadline = time.monotonic() + (0 if self.kind == "embedded" else 60)
        while True:
            try:
                self.consistent()
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(3)

    def consistent(self) -> None:
        """Nothing unfinished, every active image's every copy intact, nothing unaccounted."""
        with Catalog(self.catalog_url) as catalog:
            for table in TRANSIENT:
                assert catalog.owners.held(table) == [], table
            assert catalog.owners.importing_without_task() == []
            images = catalog.list_images(limit=1000)
            assert all(i.status not in ("saving", "importing") for i in images), images
            volumes = {v.id for v in catalog.volumes.list()}
            servers = {s.id for s in catalog.servers.list()}
            bases = catalog.owners.backup_bases()
            wanted: dict[str, set[str]] = {name: set() for name in self.targets}
            cluster_of = self._clusters_by_fsid()
            for image in images:
                for loc in image.locations:
                    wanted[cluster_of[RbdLocation.parse(loc.url).fsid]].add(image.id)
        for image in images:
            if image.status == "active":
                for site in SITES:
                    self.assert_downloads(site, image.id, image.os_hash_value)
        for name, target in self.targets.items():
            with connect(target) as cluster:
                self._assert_accounted(cluster, wanted[name], volumes, servers, bases, images)

    def _clusters_by_fsid(self) -> dict[str, str]:
        """Each test cluster's name by its fsid (the first part of a location URL)."""
        found = {}
        for name, target in self.targets.items():
            with connect(target) as cluster:
                found[cluster.fsid] = name
        return found

    def assert_downloads(self, site: str, image_id: str, sha512: str | None) -> None:
        digest = hashlib.sha512()
        with httpx.stream("GET", f"{self.urls[site]}/v2/images/{image_id}/file", timeout=120) as r:
            assert r.status_code == 200, (site, image_id)
            for chunk in r.iter_bytes():
                digest.update(chunk)
        assert digest.hexdigest() == sha512, (site, image_id)

    def _assert_accounted(
        self, cluster: Cluster, held: set[str], volumes: set[str], servers: set[str],
        bases: set[str], images: list[Any],
    ) -> None:  # fmt: skip
        present = {pool: _ferry_names(cluster, pool) for pool in POOLS}
        assert present["images"] == held, cluster.name
        for image_id in held:  # each copy is whole: its snapshot hashes to os_hash_value
            record = next(i for i in images if i.id == image_id)
            with cluster.open(ImageSpec("images", image_id, "snap"), read_only=True) as snap:
                assert _sha512(snap) == record.os_hash_value, (cluster.name, image_id)
        assert {n for n in present["volumes"]} <= {f"volume-{v}" for v in volumes}
        assert {n for n in present["vms"]} <= {f"{s}_disk" for s in servers}
        assert present["backups"] <= bases
        if isinstance(cluster, EmbeddedCluster):
            assert cluster.check().ok
            # Segments (manifest pieces) replaced by ordinary writes wait for gc; chunks of
            # data nothing references must not.
            assert cluster.gc().chunks == 0, cluster.name


POOLS = ("images", "volumes", "vms", "backups")


def _ferry_names(cluster: Cluster, pool: str) -> set[str]:
    try:
        names = cluster.list_images(pool)
    except Exception:
        return set()
    return {n for n in names if PATTERNS[pool].fullmatch(n)}


def _sha512(image: Any) -> str:
    digest = hashlib.sha512()
    size = image.stat().size
    for offset in range(0, size, 8 * MiB):
        digest.update(image.read(offset, min(8 * MiB, size - offset)))
    return digest.hexdigest()


def points(*names: str) -> list[Any]:
    """(driver, failpoint) parameters: every point on embedded clusters, the first also on
    Ceph (each operation is killed on real Ceph too, within CI's time)."""
    return [*(("embedded", n) for n in names), pytest.param("ceph", names[0], marks=CEPH)]


CEPH = pytest.mark.ceph


@pytest.fixture(params=["embedded", pytest.param("ceph", marks=pytest.mark.ceph)])
def sites(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Crashable]:
    path, targets = write_topology(tmp_path, request.param)
    raw = yaml.safe_load(path.read_text())
    for name, site in raw["sites"].items():
        site["recovery"] = {"interval_seconds": 1}
        # Default import leases (30 s): a dead worker's task must be released by the
        # reconciler at once, not by its lease lapsing.
        site["imports"] = {"staging": str(tmp_path / f"staging-{name}")}
    raw["sites"]["central"]["imports"]["allow_hosts"] = ["127.0.0.1"]
    path.write_text(yaml.safe_dump(raw))
    config = parse(raw)
    urls = {name: config.site(name).url for name in SITES}
    crashable = Crashable(tmp_path, path, targets, urls, config.catalog, request.param)
    try:
        yield crashable
    finally:
        crashable.stop()
