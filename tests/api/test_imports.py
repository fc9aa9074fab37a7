"""Imports through the real glanceclient: web-download with conversion, glance-direct,
copy-image, their errors and the web-download guards. Assertions follow what the real
Glance 33 answered in shared/reference/glance-api (steps 17-27, 34-36, 40-46, 60-78)."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Site
from tests.api.test_glance_cli import MiB, blocks, image_file, table, upload


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server on 127.0.0.1 serving a directory; /to?u=URL redirects to URL."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/to?u="):
                self.send_response(302)
                self.send_header("Location", self.path.removeprefix("/to?u="))
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()
    thread.join()


def show(site: Site, image_id: str) -> dict[str, Any]:
    with site.http() as http:
        doc: dict[str, Any] = http.get(f"/v2/images/{image_id}").json()
        return doc


def settle(site: Site, image_id: str, done: Any) -> list[tuple[Any, ...]]:
    """Poll the image until ``done(doc)``; the distinct (status, stores, importing, failed)."""
    seen: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + 120
    while True:
        doc = show(site, image_id)
        state = (
            doc["status"],
            doc.get("stores"),
            doc.get("os_glance_importing_to_stores"),
            doc.get("os_glance_failed_import"),
        )
        if not seen or seen[-1] != state:
            seen.append(state)
        if done(doc) and "os_glance_import_task" not in doc:
            return seen
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)


def tasks_of(site: Site, image_id: str) -> list[dict[str, Any]]:
    with site.http() as http:
        found: list[dict[str, Any]] = http.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        return found


def web_download(site: Site, name: str, uri: str) -> str:
    """``glance image-create-via-import --import-method web-download`` of a qcow2; its id."""
    out = site.glance(
        "image-create-via-import", "--disk-format", "qcow2", "--container-format", "bare",
        "--name", name, "--import-method", "web-download", "--uri", uri,
        "--stores", "default_backend",
    ).stdout  # fmt: skip
    return table(out)["id"]


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def test_web_download_converts_qcow2_to_raw(site: Site, tmp_path: Path, web: Any) -> None:
    base, root = web
    raw = image_file(tmp_path, "cirros.raw", 16 * MiB)
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(root / "cirros.qcow2"))
    image_id = web_download(site, "cirros", f"{base}/cirros.qcow2")
    states = settle(site, image_id, lambda d: d["status"] == "active")
    assert states[-1] == ("active", "default_backend", "", "")
    assert ("importing", None, "default_backend", "") in states or len(states) == 1
    doc = show(site, image_id)
    data = raw.read_bytes()
    # As the reference (step 19): the record describes the converted raw bytes.
    assert doc["disk_format"] == "raw" and doc["size"] == len(data)
    assert doc["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert doc["os_hash_value"] == hashlib.sha512(data).hexdigest()
    got = tmp_path / "got.raw"
    site.glance("image-download", "--file", str(got), image_id)
    assert got.read_bytes() == data
    (task,) = tasks_of(site, image_id)
    assert (task["status"], task["message"]) == ("success", "Copied 16 MiB")
    assert task["input"]["import_req"]["method"] == {
        "name": "web-download",
        "uri": f"{base}/cirros.qcow2",
    }
    shown = table(site.glance("task-show", task["id"]).stdout)
    assert shown["status"] == "success" and shown["type"] == "api_image_import"


def test_glance_direct_then_copy_image_with_tasks(site: Site, tmp_path: Path) -> None:
    path = image_file(tmp_path, "direct.raw", 12 * MiB)
    out = site.glance(
        "image-create-via-import",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--name",
        "direct",
        "--import-method",
        "glance-direct",
        "--file",
        str(path),
        "--stores",
        "default_backend,dcn0",
    ).stdout
    image_id = table(out)["id"]
    settle(site, image_id, lambda d: d.get("stores") == "dcn0,default_backend")
    doc = show(site, image_id)
    assert doc["os_glance_importing_to_stores"] == "" and doc["os_glance_failed_import"] == ""
    # copy-image to the last store; the property sequence as the reference (step 24).
    site.glance("image-import", image_id, "--stores", "dcn1", "--import-method", "copy-image")
    states = settle(site, image_id, lambda d: "dcn1" in d.get("stores", ""))
    assert states[-1] == ("active", "dcn0,dcn1,default_backend", "", "")
    assert all(s[0] == "active" and s[2] in ("dcn1", "") for s in states)
    digest = hashlib.sha512(path.read_bytes()).hexdigest()
    assert show(site, image_id)["os_hash_value"] == digest
    for store in ("default_backend", "dcn0", "dcn1"):
        assert image_id in blocks(site, store)
    listed = tasks_of(site, image_id)  # oldest first, Glance's database shape
    assert [t["input"]["import_req"]["method"]["name"] for t in listed] == [
        "glance-direct",
        "copy-image",
    ]
    assert [t["status"] for t in listed] == ["success", "success"]
    assert listed[1]["input"]["backend"] == ["dcn1"] and listed[1]["result"] == {
        "image_id": image_id
    }
    assert listed[1]["deleted"] is False and "." in listed[1]["created_at"]
    job = listed[1]["job"]  # ferry's addition: who ran it and how far it got
    assert (job["bytes_done"], job["bytes_total"], job["worker"]) == (12 * MiB, 12 * MiB, None)
    with site.http() as http:
        page = http.get("/v2/tasks").json()
    assert page["first"] == "/v2/tasks" and page["schema"] == "/v2/schemas/tasks"
    assert {t["id"] for t in listed} <= {t["id"] for t in page["tasks"]}
    assert "input" not in page["tasks"][0]


def test_copy_image_to_two_stores_and_all_stores(site: Site, tmp_path: Path) -> None:
    image_id = upload(site, image_file(tmp_path))["id"]
    out = site.glance(
        "image-import", image_id, "--stores", "dcn0,dcn1", "--import-method", "copy-image"
    ).stdout
    assert table(out)["status"] == "active"
    states = settle(site, image_id, lambda d: d.get("stores") == "dcn0,dcn1,default_backend")
    # importing_to_stores only shrinks as stores land (and may read "" right after the 202,
    # the reference's race); the image stays active throughout.
    assert all(s[0] == "active" and s[2] in ("dcn0,dcn1", "dcn0", "dcn1", "") for s in states)
    assert states[-1] == ("active", "dcn0,dcn1,default_backend", "", "")
    # all_stores: every writable store that lacks it (here: after one was removed).
    site.glance("stores-delete", "--store", "dcn1", image_id)
    with site.http() as http:
        r = http.post(
            f"/v2/images/{image_id}/import",
            json={"method": {"name": "copy-image"}, "all_stores": True},
        )
        assert r.status_code == 202 and r.content == b""
    settle(site, image_id, lambda d: d.get("stores") == "dcn0,dcn1,default_backend")


def test_import_errors_are_glances(site: Site, tmp_path: Path) -> None:
    image_id = upload(site, image_file(tmp_path, size=4 * MiB))["id"]
    with site.http() as http:
        queued = http.post(
            "/v2/images", json={"name": "q", "disk_format": "raw", "container_format": "bare"}
        ).json()["id"]

        def post(target: str, body: dict[str, Any]) -> tuple[int, str]:
            r = http.post(
                f"/v2/images/{target}/import", json=body, headers={"Accept": "application/json"}
            )
            return r.status_code, r.json()["message"].split("<br")[0] if r.content else ""

        copy = {"name": "copy-image"}
        assert post(image_id, {"method": copy, "stores": ["default_backend"]}) == (
            400,
            "Image is already present at store 'default_backend'",
        )
        assert post(image_id, {"method": copy}) == (
            400,
            "Image is already present at store 'default_backend'",
        )
        assert post(image_id, {"method": copy, "stores": ["nosuchstore"]}) == (
            409,
            "Store for identifier nosuchstore not found",
        )
        assert post(queued, {"method": copy, "stores": ["dcn0"]}) == (
            409,
            "Only images with status active can be targeted for copying",
        )
        assert post(queued, {"method": {"name": "glance-direct"}}) == (
            409,
            "Image needs to be staged before 'glance-direct' method can be used",
        )
        assert post(queued, {"method": {"name": "bogus"}}) == (
            400,
            "Unknown import method name 'bogus'.",
        )
        missing = "00000000-0000-0000-0000-000000000000"
        assert post(missing, {"method": copy, "stores": ["dcn0"]}) == (
            404,
            f"No image found with ID {missing}",
        )
        # Nothing was recorded by the refused requests.
        assert tasks_of(site, image_id) == [] and tasks_of(site, queued) == []


@pytest.mark.parametrize(
    "uri",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/disk.img",
        "http://localhost:{port}/disk.raw",  # loopback by name: not on the allow-list
        "{base}/to?u=http://169.254.169.254/",  # an allowed host redirecting inward
        "file:///etc/passwd",
    ],
)
def test_web_download_refuses_internal_addresses(site: Site, web: Any, uri: str) -> None:
    base, root = web
    (root / "disk.raw").write_bytes(b"x" * MiB)
    uri = uri.format(base=base, port=base.rpartition(":")[2])
    with site.http() as http:
        image_id = http.post(
            "/v2/images", json={"name": "w", "disk_format": "raw", "container_format": "bare"}
        ).json()["id"]
        r = http.post(
            f"/v2/images/{image_id}/import",
            json={"method": {"name": "web-download", "uri": uri}, "stores": ["default_backend"]},
        )
    if r.status_code == 202:  # refused by the job (after a redirect): the task says why
        states = settle(site, image_id, lambda d: d.get("os_glance_failed_import"))
        assert states[-1] == ("queued", None, "", "default_backend")
        (task,) = tasks_of(site, image_id)
        assert task["status"] == "failure" and "refused" in task["message"], task["message"]
    else:  # refused up front, as Glance's URI filter does
        assert r.status_code == 400 and "refused" in r.text, r.text
    assert image_id not in blocks(site, "default_backend")


def test_hostile_qcow2_is_refused_and_nothing_stored(site: Site, tmp_path: Path, web: Any) -> None:
    base, root = web
    qemu_img(
        "create", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", str(root / "bad.qcow2"), "1M"
    )
    image_id = web_download(site, "bad", f"{base}/bad.qcow2")
    states = settle(site, image_id, lambda d: d.get("os_glance_failed_import"))
    assert states[-1] == ("queued", None, "", "default_backend")
    (task,) = tasks_of(site, image_id)
    assert task["status"] == "failure" and "backing file" in task["message"]
    assert image_id not in blocks(site, "default_backend")


def test_copy_into_a_failing_store_with_and_without_allow_failure(
    site: Site, tmp_path: Path
) -> None:
    if site.clusters["dcn1"].startswith("ceph:"):
        pytest.skip("breaks dcn1 by replacing its embedded images pool with a file")
    pool = Path(site.clusters["dcn1"]) / "pools" / "images"
    for allow, task_status in (("True", "success"), ("False", "failure")):
        image_id = upload(site, image_file(tmp_path, size=4 * MiB))["id"]
        site.glance("image-import", image_id, "--stores", "dcn0", "--import-method", "copy-image")
        settle(site, image_id, lambda d: d.get("stores") == "dcn0,default_backend")
        pool.rename(tmp_path / "aside")
        pool.write_text("not a pool")
        try:
            site.glance(
                "image-import",
                image_id,
                "--stores",
                "dcn1",
                "--import-method",
                "copy-image",
                "--allow-failure",
                allow,
            )
            states = settle(site, image_id, lambda d: d.get("os_glance_failed_import"))
        finally:
            pool.unlink()
            (tmp_path / "aside").rename(pool)
        # The reference (steps 73-78): same image view either way, the task tells them apart.
        assert states[-1] == ("active", "dcn0,default_backend", "", "dcn1")
        copy = tasks_of(site, image_id)[-1]
        assert copy["status"] == task_status
        if allow == "True":
            assert copy["message"] == ""  # as Glance: a partial success is a success
        else:
            assert copy["message"], copy  # says why, where Glance says "Internal Error"
        assert image_id not in blocks(site, "dcn1")


def test_web_download_of_data_that_is_not_its_disk_format_is_refused(
    site: Site, tmp_path: Path, web: Any
) -> None:
    base, root = web
    (root / "plain.qcow2").write_bytes(image_file(tmp_path, size=2 * MiB).read_bytes())
    image_id = web_download(site, "plain", f"{base}/plain.qcow2")  # declared qcow2, raw bytes
    states = settle(site, image_id, lambda d: d.get("os_glance_failed_import"))
    assert states[-1] == ("queued", None, "", "default_backend")
    (task,) = tasks_of(site, image_id)
    assert task["status"] == "failure"
    assert "disk_format qcow2 does not match stream data raw" in task["message"]
    assert image_id not in blocks(site, "default_backend")
