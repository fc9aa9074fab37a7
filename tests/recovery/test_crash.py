"""The crash suite: SIGKILL inside every operation that leaves a record unfinished, restart,
and nothing is stuck, lost or orphaned (measured from the clusters, not the catalogue)."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.recovery.conftest import Crashable, MiB


def data(size: int = 24 * MiB) -> bytes:
    """Random bytes with a zero hole (never stored)."""
    raw = bytearray(os.urandom(size))
    raw[8 * MiB : 12 * MiB] = bytes(4 * MiB)
    return bytes(raw)


@pytest.mark.parametrize("point", ["upload.batch:2", "upload.written"])
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


@pytest.mark.parametrize("point", ["stage.chunk:2", "stage.renamed"])
def test_kill_during_stage(sites: Crashable, point: str) -> None:
    def stage(s: Crashable) -> None:
        image_id = s.new_image()
        s.call("central", "PUT", f"/v2/images/{image_id}/stage", content=data(),
               headers={"content-type": "application/octet-stream"})  # fmt: skip

    sites.crash(point, stage)
    sites.settle()
    sites.assert_consistent()
    assert [i["status"] for i in _images(sites)] == ["queued"]
    staging = sites.tmp / "staging-central"
    assert not staging.exists() or list(staging.iterdir()) == []


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


@pytest.mark.parametrize("point", ["import.converted", "import.ingest.batch:2", "import.ingested"])
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


@pytest.mark.parametrize("point", ["copy.window", "copy.sealed"])
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


@pytest.mark.parametrize("point", ["image.delete.marked", "image.delete.store"])
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
