"""The crash suite: SIGKILL inside every operation that leaves a record unfinished, restart,
and nothing is stuck, lost or orphaned (measured from the clusters, not the catalogue)."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.recovery.conftest import Crashable, MiB, points


def data(size: int = 24 * MiB) -> bytes:
    """Random bytes with a zero hole (never stored)."""
    raw = bytearray(os.urandom(size))
    raw[8 * MiB : 12 * MiB] = bytes(4 * MiB)
    return bytes(raw)


@pytest.mark.parametrize(
    ("sites", "point"), points("upload.batch:2", "upload.written"), indirect=["sites"]
)
def test_kill_during_upload(sites: Crashable, point: str) -> None:
    kept = data()
    sites.start()
    survivor = sites.upload("central", kept)
    sites.stop()
    sites.crash(point, lambda s: s.upload("central", data()))
    sites.settle()
    sites.assert_consistent()
    with_data = [i for i in _images(sites) if i["status"] == "active"]
    assert [i["id"] for i in with_data] == [survivor]
    cut = next(i for i in _images(sites) if i["id"] != survivor)
    assert cut["status"] == "queued"  # as Glance after a failed upload: upload again
    reply = sites.call("central", "PUT", f"/v2/images/{cut['id']}/file", content=kept,
                       headers={"content-type": "application/octet-stream"})  # fmt: skip
    assert reply.status_code == 204, reply.text
    sites.assert_consistent()


@pytest.mark.parametrize(
    ("sites", "point"), points("stage.chunk:2", "stage.renamed"), indirect=["sites"]
)
def test_kill_during_stage(sites: Crashable, point: str) -> None:
    def stage(s: Crashable) -> None:
        image_id = s.new_image()
        s.call("central", "PUT", f"/v2/images/{image_id}/stage", content=data(),
               headers={"content-type": "application/octet-stream"})  # fmt: skip

    sites.crash(point, stage)
    sites.settle()
    sites.assert_consistent()
    assert [i["status"] for i in _images(sites)] == ["queued"]
    staging = sites.tmp / "staging-central"  # a staged file is kept 10 s (a rename's grace)
    deadline = time.monotonic() + 60
    while staging.exists() and list(staging.iterdir()):
        assert time.monotonic() < deadline, list(staging.iterdir())
        time.sleep(0.5)


@pytest.fixture
def qcow2_url(tmp_path: Path) -> Iterator[str]:
    """A qcow2 of 24 MiB of data served on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "disk.raw").write_bytes(data())
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(root / "disk.raw"),
                    str(root / "disk.qcow2")], check=True)  # fmt: skip

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/disk.qcow2"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("sites", "point"),
    points("import.converted", "import.ingest.batch:2", "import.ingested"),
    indirect=["sites"],
)
def test_kill_during_web_download_with_conversion(
    sites: Crashable, qcow2_url: str, point: str
) -> None:
    def web_download(s: Crashable) -> None:
        image_id = s.new_image(disk_format="qcow2")
        body = {"method": {"name": "web-download", "uri": qcow2_url}}
        s.ok("central", "POST", f"/v2/images/{image_id}/import", json=body)

    sites.crash(point, web_download)
    sites.settle()  # the import's task is taken over and finishes
    sites.assert_consistent()
    [image] = _images(sites)
    assert image["status"] == "active" and image["disk_format"] == "raw"


@pytest.mark.parametrize(
    ("sites", "point"), points("copy.window", "copy.sealed"), indirect=["sites"]
)
def test_kill_during_copy_image(sites: Crashable, point: str) -> None:
    sites.start()
    image_id = sites.upload("central", data(40 * MiB))
    sites.stop()

    def copy(s: Crashable) -> None:
        body = {"method": {"name": "copy-image"}, "stores": ["dcn0", "dcn1"]}
        s.ok("central", "POST", f"/v2/images/{image_id}/import", json=body)

    sites.crash(point, copy)
    sites.settle()
    sites.assert_consistent()
    [image] = _images(sites)
    assert set(image["stores"].split(",")) == {"default_backend", "dcn0", "dcn1"}


@pytest.mark.parametrize(
    ("sites", "point"), points("image.delete.marked", "image.delete.store"), indirect=["sites"]
)
def test_kill_during_image_delete(sites: Crashable, point: str) -> None:
    sites.start()
    image_id = sites.upload("central", data(12 * MiB))
    body = {"method": {"name": "copy-image"}, "stores": ["dcn0", "dcn1"]}
    sites.ok("central", "POST", f"/v2/images/{image_id}/import", json=body)
    sites.wait_active("central", image_id, {"default_backend", "dcn0", "dcn1"})
    sites.stop()
    sites.crash(point, lambda s: s.call("central", "DELETE", f"/v2/images/{image_id}"))
    sites.settle()
    sites.assert_consistent()  # the deleted image's data is gone from all three clusters
    assert _images(sites) == []


def _images(sites: Crashable) -> list[dict[str, object]]:
    return list(sites.ok("central", "GET", "/v2/images")["images"])


# --- volumes, servers, backups --------------------------------------------------------------


def _image_at(sites: Crashable, *stores: str) -> str:
    """A 12 MiB raw image uploaded at central and copied to ``stores``."""
    image_id = sites.upload("central", data(12 * MiB))
    if stores:
        body = {"method": {"name": "copy-image"}, "stores": list(stores)}
        sites.ok("central", "POST", f"/v2/images/{image_id}/import", json=body)
        sites.wait_active("central", image_id, {"default_backend", *stores})
    return image_id


def _volume(sites: Crashable, site: str, image_id: str) -> dict[str, object]:
    body = {"volume": {"imageRef": image_id, "availability_zone": site}}
    return dict(sites.ok(site, "POST", "/v3/volumes", json=body)["volume"])


def _server(sites: Crashable, site: str, image_id: str) -> dict[str, object]:
    body = {"server": {"name": "vm", "imageRef": image_id, "availability_zone": site}}
    return dict(sites.ok(site, "POST", "/v2.1/servers", json=body)["server"])


def _records(sites: Crashable, site: str, kind: str) -> list[dict[str, object]]:
    path = {"volumes": "/v3/volumes", "servers": "/v2.1/servers", "backups": "/v3/backups"}
    return list(sites.ok(site, "GET", path[kind])[kind])


@pytest.mark.parametrize("copied", [True, False], ids=["clone", "with-copy"])
def test_kill_during_volume_create(sites: Crashable, copied: bool) -> None:
    sites.start()
    image_id = _image_at(sites, "dcn1") if copied else _image_at(sites)
    sites.stop()
    point = "volume.made" if copied else "copy.window"
    sites.crash(point, lambda s: _volume(s, "dcn1", image_id))
    sites.settle()
    sites.assert_consistent()
    [volume] = _records(sites, "dcn1", "volumes")
    assert volume["status"] == "error"  # as Cinder: the user deletes it
    assert sites.call("dcn1", "DELETE", f"/v3/volumes/{volume['id']}").status_code == 202
    assert _records(sites, "dcn1", "volumes") == []
    if not copied:  # the interrupted copy of the image was resumed and finished
        sites.wait_active("dcn1", image_id, {"central", "dcn1"})
    sites.assert_consistent()


def test_kill_during_server_create(sites: Crashable) -> None:
    sites.start()
    image_id = _image_at(sites, "dcn0")
    sites.stop()
    sites.crash("server.made", lambda s: _server(s, "dcn0", image_id))
    sites.settle()
    sites.assert_consistent()
    [server] = _records(sites, "dcn0", "servers")
    detail = sites.ok("dcn0", "GET", f"/v2.1/servers/{server['id']}")["server"]
    assert detail["status"] == "ERROR" and "cut off" in detail["fault"]["message"]
    assert sites.call("dcn0", "DELETE", f"/v2.1/servers/{server['id']}").status_code == 204
    sites.assert_consistent()


@pytest.mark.parametrize(
    ("sites", "point"), points("server_image.snapped", "upload.batch"), indirect=["sites"]
)
def test_kill_during_server_image_create(sites: Crashable, point: str) -> None:
    sites.start()
    image_id = _image_at(sites, "dcn0")
    server = _server(sites, "dcn0", image_id)
    sites.stop()
    body = {"createImage": {"name": "snap"}}
    path = f"/v2.1/servers/{server['id']}/action"
    sites.crash(point, lambda s: s.call("dcn0", "POST", path, json=body))
    sites.settle()
    sites.assert_consistent()  # the disk's image-<id> snapshot and partial data are gone
    images = {i["id"]: i["status"] for i in _images(sites)}
    assert images.pop(image_id) == "active"
    assert list(images.values()) in ([], ["queued"])
    assert sites.ok("dcn0", "GET", f"/v2.1/servers/{server['id']}")["server"]["status"] == "ACTIVE"


@pytest.mark.parametrize(
    ("sites", "point"), points("backup.snapped", "backup.copied"), indirect=["sites"]
)
def test_kill_during_backup(sites: Crashable, point: str) -> None:
    sites.start()
    image_id = _image_at(sites, "dcn0")
    volume = _volume(sites, "dcn0", image_id)
    sites.stop()
    body = {"backup": {"volume_id": volume["id"]}}
    sites.crash(point, lambda s: s.call("central", "POST", "/v3/backups", json=body))
    sites.settle()
    sites.assert_consistent()
    [backup] = _records(sites, "central", "backups")
    assert backup["status"] == "error"
    got = sites.ok("dcn0", "GET", f"/v3/volumes/{volume['id']}")["volume"]
    assert got["status"] == "available"
    assert sites.call("central", "DELETE", f"/v3/backups/{backup['id']}").status_code == 202
    sites.ok("central", "POST", "/v3/backups", json=body)  # and a new one works
    sites.assert_consistent()


@pytest.mark.parametrize("kind", ["volume", "server"])
def test_kill_during_delete(sites: Crashable, kind: str) -> None:
    sites.start()
    image_id = _image_at(sites, "dcn0")
    made = (
        _volume(sites, "dcn0", image_id) if kind == "volume" else _server(sites, "dcn0", image_id)
    )
    sites.stop()
    path = f"/v3/volumes/{made['id']}" if kind == "volume" else f"/v2.1/servers/{made['id']}"
    sites.crash(f"{kind}.delete.marked", lambda s: s.call("dcn0", "DELETE", path))
    sites.settle()
    sites.assert_consistent()  # and the delete was finished: no record, no block image
    assert _records(sites, "dcn0", f"{kind}s") == []
