"""Import jobs below the API: copy-image through the transfer engine, takeover, failures.

The stores are real embedded clusters or real Ceph clusters (and a mix); the catalogue is
SQLite. A worker killed mid-copy is a real process killed with SIGKILL.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import ferry.images.imports as imports_module
from ferry import config as configuration
from ferry.block import ImageSpec
from ferry.block.embedded import EmbeddedCluster
from ferry.catalog import Catalog, ImageRecord, TaskRecord
from ferry.catalog.records import utcnow
from ferry.errors import NotFound
from ferry.images.imports import Imports, Worker
from ferry.images.service import ImageService
from ferry.images.stores import Stores
from ferry.images.transfer import WINDOW
from tests.conftest import ceph_conf

MiB = 1 << 20
OWNER = "c0ffee00c0ffee00c0ffee00c0ffee00"


@dataclass
class Central:
    """One site's import machinery over stores default_backend, dcn0 and dcn1."""

    config: dict[str, Any]
    targets: dict[str, str]  # store id -> cluster target
    service: ImageService
    imports: Imports

    def upload(self, data: bytes) -> ImageRecord:
        record = self.service.create({"name": "img", "disk_format": "raw",
                                      "container_format": "bare"})  # fmt: skip
        upload = self.service.start_upload(record.id, None, len(data))
        for pos in range(0, len(data), 8 * MiB):
            upload.feed(data[pos : pos + 8 * MiB])
        return upload.finish()

    def copy(self, image_id: str, stores: list[str], must_succeed: bool = False) -> TaskRecord:
        body = {"method": {"name": "copy-image"}, "stores": stores,
                "all_stores_must_succeed": must_succeed}  # fmt: skip
        return self.imports.request(image_id, body)

    def read(self, store_id: str, image_id: str) -> bytes:
        store = self.service.stores.get(store_id)
        assert store is not None
        with store.open_snap(image_id) as image:
            return image.read(0, image.stat().size)

    def has_block_image(self, store_id: str, image_id: str) -> bool:
        store = self.service.stores.get(store_id)
        assert store is not None
        return image_id in store.cluster.list_images("images")


def make_config(tmp: Path, clusters: dict[str, str], catalog_url: str) -> dict[str, Any]:
    """One site, central, with a store on each cluster (named by its store id)."""
    stores: list[dict[str, Any]] = [
        {"id": sid, "cluster": sid, "default": sid == "default_backend",
         **({"client": "external"} if target.startswith("ceph:") else {})}
        for sid, target in clusters.items()
    ]  # fmt: skip
    return {
        "catalog": catalog_url,
        "clusters": {
            sid: configuration.ClusterConfig.from_target(t).model_dump(mode="json")
            for sid, t in clusters.items()
        },
        "sites": {"central": {"stores": stores, "imports": {
            "lease_seconds": 1.0, "staging": str(tmp / "staging")}}},
    }  # fmt: skip


def make_service(raw: dict[str, Any]) -> tuple[ImageService, Imports]:
    config = configuration.parse(raw)
    stores = Stores(config, "central")
    service = ImageService(Catalog(config.catalog, stores.catalog_keys), stores, OWNER)
    return service, Imports(service, "central", config.site("central").imports)


@pytest.fixture(params=["embedded", pytest.param("ceph", marks=pytest.mark.ceph), "mixed"])
def central(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Central]:
    clusters: dict[str, str] = {}
    for name in ("default_backend", "dcn0", "dcn1"):
        ceph = request.param == "ceph" or (request.param == "mixed" and name == "dcn1")
        if ceph:
            clusters[name] = f"ceph:{ceph_conf('central' if name == 'default_backend' else name)}"
        else:
            EmbeddedCluster.init(tmp_path / name, name)
            clusters[name] = str(tmp_path / name)
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    raw = make_config(tmp_path, clusters, url)
    service, imports = make_service(raw)
    service.catalog.migrate()
    yield Central(raw, clusters, service, imports)
    service.stores.close()
    service.catalog.close()


def image_bytes(size: int, data_every: int = 1) -> bytes:
    """Random 1 MiB pieces every ``data_every`` MiB, zeros between."""
    out = bytearray(size)
    for pos in range(0, size, data_every * MiB):
        out[pos : pos + MiB] = os.urandom(min(MiB, size - pos))
    return bytes(out)


def run_all(imports: Imports) -> None:
    while imports.run_next("test-worker"):
        pass


def test_copy_image_to_two_stores_in_one_pass(central: Central) -> None:
    data = image_bytes(40 * MiB, data_every=4)  # a quarter data, the rest zeros
    record = central.upload(data)
    task = central.copy(record.id, ["dcn0", "dcn1"])
    image = central.service.get(record.id)
    assert image.properties["os_glance_import_task"] == task.id
    assert image.properties["os_glance_importing_to_stores"] == "dcn0,dcn1"
    run_all(central.imports)
    done = central.service.catalog.get_task(task.id)
    assert (done.status, done.message, done.result) == ("success", "Copied 40 MiB",
                                                        {"image_id": record.id})  # fmt: skip
    image = central.service.get(record.id)
    assert image.stores == ("dcn0", "dcn1", "default_backend")
    assert "os_glance_import_task" not in image.properties
    assert image.properties["os_glance_importing_to_stores"] == ""
    assert image.properties["os_glance_failed_import"] == ""
    for store in ("dcn0", "dcn1"):
        assert central.read(store, record.id) == data
    nonzero = sum(MiB for pos in range(0, len(data), MiB) if any(data[pos : pos + MiB]))
    assert done.checkpoint is not None
    assert done.checkpoint["written"] == {"dcn0": nonzero, "dcn1": nonzero}  # zeros never sent
    assert done.checkpoint["resumed_from"] == 0
    assert (done.progress_done, done.progress_total) == (len(data), len(data))


def test_ensure_copies_once_then_moves_nothing(central: Central) -> None:
    record = central.upload(image_bytes(8 * MiB))
    first = central.imports.ensure(record.id, "dcn1", "w")
    assert first is not None and first.status == "success"
    assert "dcn1" in central.service.get(record.id).stores
    assert central.imports.ensure(record.id, "dcn1", "w") is None


def test_a_store_that_fails_is_reported_and_gets_nothing(central: Central, tmp_path: Path) -> None:
    if central.targets["dcn0"].startswith("ceph:"):
        pytest.skip("breaks dcn0 by replacing its embedded pool with a file")
    record = central.upload(image_bytes(8 * MiB))
    pool = Path(central.targets["dcn0"]) / "pools" / "images"
    broken = tmp_path / "images.moved"
    _break(pool, broken)
    task = central.copy(record.id, ["dcn0", "dcn1"])
    run_all(central.imports)
    done = central.service.catalog.get_task(task.id)
    image = central.service.get(record.id)
    assert (done.status, done.message) == ("success", "")  # as Glance, allow-failure
    assert image.stores == ("dcn1", "default_backend")
    assert image.properties["os_glance_failed_import"] == "dcn0"
    assert image.properties["os_glance_importing_to_stores"] == ""
    # All stores must succeed: the task fails and no store gets a location.
    _unbreak(pool, broken)
    other = central.upload(image_bytes(8 * MiB))
    _break(pool, broken)
    task = central.copy(other.id, ["dcn0", "dcn1"], must_succeed=True)
    run_all(central.imports)
    done = central.service.catalog.get_task(task.id)
    image = central.service.get(other.id)
    assert done.status == "failure" and done.result is None and done.message
    assert image.stores == ("default_backend",)
    assert image.properties["os_glance_failed_import"] == "dcn0,dcn1"
    assert not central.has_block_image("dcn1", other.id)  # the copy that worked is removed


def _break(pool: Path, aside: Path) -> None:
    pool.rename(aside)
    pool.write_text("not a pool")


def _unbreak(pool: Path, aside: Path) -> None:
    pool.unlink()
    aside.rename(pool)


def test_a_corrupted_source_chunk_fails_the_copy(central: Central) -> None:
    source = central.targets["default_backend"]
    if source.startswith("ceph:"):
        pytest.skip("corrupts a chunk file of an embedded source")
    record = central.upload(image_bytes(8 * MiB))
    for chunk in (Path(source) / "chunks").rglob("*"):
        if chunk.is_file() and chunk.stat().st_size > 0:
            raw = bytearray(chunk.read_bytes())
            raw[len(raw) // 2] ^= 0x01
            chunk.write_bytes(bytes(raw))
    task = central.copy(record.id, ["dcn0", "dcn1"])
    run_all(central.imports)
    done = central.service.catalog.get_task(task.id)
    image = central.service.get(record.id)
    assert done.status == "failure" and "sha512" in done.message
    assert image.stores == ("default_backend",)
    assert image.properties["os_glance_failed_import"] == "dcn0,dcn1"
    assert not central.has_block_image("dcn0", record.id)
    assert not central.has_block_image("dcn1", record.id)


def slowed(seconds: float) -> Any:
    """The transfer engine, pausing after each committed window."""
    real = imports_module.transfer

    def slow(*args: Any, on_window: Any = None, **kwargs: Any) -> Any:
        def pause(end: int) -> None:
            on_window(end)
            time.sleep(seconds)

        return real(*args, on_window=pause, **kwargs)

    return slow


def _slow_worker(raw: dict[str, Any]) -> None:
    """A worker process whose copy pauses after each committed window (to be killed)."""
    imports_module.transfer = slowed(0.5)
    make_service(raw)[1].run_next("doomed")


def test_a_killed_worker_is_taken_over_from_its_checkpoint(central: Central) -> None:
    size = 5 * WINDOW
    data = image_bytes(size)
    record = central.upload(data)
    task = central.copy(record.id, ["dcn0", "dcn1"])
    proc = multiprocessing.get_context("spawn").Process(target=_slow_worker, args=(central.config,))
    proc.start()
    deadline = time.monotonic() + 120
    while True:
        seen = central.service.catalog.get_task(task.id)
        if seen.checkpoint and seen.checkpoint.get("offset", 0) >= 2 * WINDOW:
            break
        assert time.monotonic() < deadline and proc.is_alive(), seen
        time.sleep(0.05)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    killed_at = central.service.catalog.get_task(task.id)
    assert killed_at.lease_owner == "doomed" and killed_at.status == "processing"
    committed = killed_at.checkpoint["offset"] if killed_at.checkpoint else 0
    # Another worker claims it once the lease lapsed (1 s here) and finishes it.
    worker = Worker(central.imports, poll=0.1)
    worker.start()
    try:
        while central.service.catalog.get_task(task.id).status == "processing":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        worker.stop()
    done = central.service.catalog.get_task(task.id)
    assert done.status == "success", done.message
    assert done.checkpoint is not None and done.checkpoint["resumed_from"] == committed
    # Only what was not committed was sent again, to each store.
    assert done.checkpoint["written"] == {"dcn0": size - committed, "dcn1": size - committed}
    digest = hashlib.sha512(data).hexdigest()
    for store in ("dcn0", "dcn1"):
        assert hashlib.sha512(central.read(store, record.id)).hexdigest() == digest
    assert central.service.get(record.id).stores == ("dcn0", "dcn1", "default_backend")


def test_a_stopping_server_leaves_the_job_at_its_checkpoint_for_the_next(
    central: Central, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = imports_module.transfer
    monkeypatch.setattr(imports_module, "transfer", slowed(0.3))
    size = 5 * WINDOW
    data = image_bytes(size)
    record = central.upload(data)
    task = central.copy(record.id, ["dcn0"])
    worker = Worker(central.imports, poll=0.1)
    worker.start()
    deadline = time.monotonic() + 120
    while (central.service.catalog.get_task(task.id).checkpoint or {}).get("offset", 0) < WINDOW:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    worker.stop()  # returns at the next checkpoint, not at the end of the copy
    stopped = central.service.catalog.get_task(task.id)
    assert stopped.status == "processing" and stopped.checkpoint is not None
    committed = stopped.checkpoint["offset"]
    assert WINDOW <= committed < size
    assert stopped.lease_expires_at is not None and stopped.lease_expires_at <= utcnow()
    assert "dcn0" not in central.service.get(record.id).stores

    monkeypatch.setattr(imports_module, "transfer", real)
    central.imports.stopping.clear()  # the server starts again
    assert central.imports.run_next("next")  # claimable at once: the lease was handed back
    done = central.service.catalog.get_task(task.id)
    assert done.status == "success", done.message
    assert done.checkpoint is not None and done.checkpoint["resumed_from"] == committed
    assert hashlib.sha512(central.read("dcn0", record.id)).digest() == hashlib.sha512(data).digest()


def test_copy_of_a_deleted_image_fails_cleanly(central: Central) -> None:
    record = central.upload(image_bytes(4 * MiB))
    task = central.copy(record.id, ["dcn0"])
    central.service.delete(record.id)
    run_all(central.imports)
    assert central.service.catalog.get_task(task.id).status == "failure"
    with pytest.raises(NotFound):
        central.service.get(record.id)
    assert not central.has_block_image("dcn0", record.id)
    spec = ImageSpec("images", record.id)
    assert str(spec) == f"images/{record.id}"
