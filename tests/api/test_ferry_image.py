"""``ferry image`` as a user runs it (a subprocess) against a running site, and ImageClient."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry.client import ImageClient, error_message
from tests.api.conftest import Site, free_port
from tests.api.test_glance_cli import MiB, image_file
from tests.api.test_imports import web  # noqa: F401 - the fixture: an HTTP server on 127.0.0.1


def ferry(url: str | None, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """``ferry image [--url URL] ARGS``; without a URL the site comes from FERRY_URL."""
    proc = subprocess.run(
        [sys.executable, "-m", "ferry", "image", *(["--url", url] if url else []), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def rows(stdout: str) -> list[list[str]]:
    """A Rich table's body rows, cells stripped."""
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in stdout.splitlines()
        if line.startswith("│")
    ]


def fields(stdout: str) -> dict[str, Any]:
    """``show``'s two-column table; the ``location`` rows as a list."""
    found: dict[str, Any] = {"location": []}
    for key, value in rows(stdout):
        if key == "location":
            found["location"].append(value.split())
        else:
            found[key] = value
    return found


def test_stores_lists_the_four_stores_with_the_url_from_the_environment(site: Site) -> None:
    env = {**os.environ, "FERRY_URL": site.url}
    proc = subprocess.run(
        [sys.executable, "-m", "ferry", "image", "stores"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert rows(proc.stdout) == [
        ["default_backend", "central rbd glance store", "yes"],
        ["http", "http store", ""],
        ["dcn0", "dcn0 rbd glance store", ""],
        ["dcn1", "dcn1 rbd glance store", ""],
    ]


def test_create_copy_delete_and_download(site: Site, tmp_path: Path) -> None:
    path = image_file(tmp_path, "disk.raw", 6 * MiB)  # random data around zero regions
    data = path.read_bytes()
    created = fields(ferry(site.url, "create", "disk", "--file", str(path)).stdout)
    image_id = created["id"]
    assert created == {
        "id": image_id,
        "name": "disk",
        "status": "active",
        "size": f"{6 * MiB} (6 MiB)",
        "stores": "default_backend",
        "location": [],
    }
    listed = {r[0]: r[1:] for r in rows(ferry(site.url, "list").stdout)}
    assert listed[image_id] == ["disk", "active", "6 MiB", "raw", "default_backend"]

    copied = fields(ferry(site.url, "copy", image_id, "--to", "dcn0", "--to", "dcn1").stdout)
    assert copied["stores"] == "dcn0, dcn1, default_backend"
    shown = fields(ferry(site.url, "show", image_id).stdout)
    assert shown["stores"] == "dcn0, dcn1, default_backend"
    assert [store for store, _ in shown["location"]] == ["default_backend", "dcn0", "dcn1"]
    assert all(url.endswith(f"/images/{image_id}/snap") for _, url in shown["location"])
    assert len({url for _, url in shown["location"]}) == 3  # one per cluster

    ferry(site.url, "delete", image_id, "--store", "dcn0")
    shown = fields(ferry(site.url, "show", image_id).stdout)
    assert shown["stores"] == "dcn1, default_backend"
    assert [store for store, _ in shown["location"]] == ["default_backend", "dcn1"]

    # --all-stores fills in every writable store that lacks it (not the read-only http one).
    copied = fields(ferry(site.url, "copy", image_id, "--all-stores").stdout)
    assert copied["stores"] == "dcn0, dcn1, default_backend"

    out = tmp_path / "out.raw"
    ferry(site.url, "download", image_id, "-o", str(out))
    assert out.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []

    ferry(site.url, "delete", image_id)
    gone = ferry(site.url, "show", image_id, ok=False)
    assert gone.returncode == 2


def test_create_from_url_and_a_failed_fetch(site: Site, tmp_path: Path, web: Any) -> None:  # noqa: F811
    base, root = web
    path = image_file(root, "web.raw", 5 * MiB)
    out = ferry(site.url, "create", "web", "--from-url", f"{base}/web.raw", "--store", "dcn1")
    created = fields(out.stdout)
    assert (created["status"], created["stores"]) == ("active", "dcn1")
    got = tmp_path / "got.raw"
    ferry(site.url, "download", created["id"], "-o", str(got))
    assert got.read_bytes() == path.read_bytes()

    # Nothing to fetch: the import task fails, its message is the error, the image is gone.
    failed = ferry(site.url, "create", "nothing", "--from-url", f"{base}/missing.raw", ok=False)
    assert failed.returncode == 1
    assert failed.stderr.startswith("ferry: error: import of image ")
    assert f"into default_backend failed: web-download: {base}/missing.raw returned 404" in (
        failed.stderr
    )
    assert failed.stderr.count("\n") == 1 and failed.stdout == ""
    names = [r[1] for r in rows(ferry(site.url, "list").stdout)]
    assert names == ["web"]


def test_errors_are_one_line_with_the_servers_message(site: Site, tmp_path: Path) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    proc = ferry(site.url, "show", missing, ok=False)
    assert proc.returncode == 2
    assert proc.stderr == f"ferry: error: No image found with ID {missing}\n"

    image_id = fields(
        ferry(site.url, "create", "small", "--file", str(image_file(tmp_path, size=MiB))).stdout
    )["id"]
    proc = ferry(site.url, "copy", image_id, "--to", "nosuch", ok=False)
    assert proc.returncode == 16  # 409, as Glance
    assert proc.stderr == "ferry: error: Store for identifier nosuch not found\n"

    # A refused upload deletes the image it created: nothing is left queued.
    proc = ferry(site.url, "create", "ro", "--file", str(tmp_path / "cirros.raw"),
                 "--store", "http", ok=False)  # fmt: skip
    assert proc.returncode == 1 and "Adding images to store is disabled" in proc.stderr
    assert [r[0] for r in rows(ferry(site.url, "list").stdout)] == [image_id]


def test_an_unreachable_site_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = ferry(url, "list", ok=False)
    assert proc.returncode == 110
    assert proc.stderr.startswith(f"ferry: error: cannot reach the Image API at {url}: ")
    assert proc.stderr.endswith("is `ferry up` running?\n")


def test_client_streams_with_progress(site: Site) -> None:
    data = os.urandom(3 * MiB) + bytes(14 * MiB) + os.urandom(MiB)
    sent: list[int] = []
    received: list[int] = []
    jobs: list[tuple[int, int | None]] = []
    with ImageClient(site.url) as client:
        image = client.create(name="s", disk_format="raw", container_format="bare")
        client.upload(image["id"], io.BytesIO(data), len(data), progress=sent.append)
        assert sent == [8 * MiB, 16 * MiB, 18 * MiB]  # 8 MiB reads, never the whole stream
        out = io.BytesIO()
        assert client.download(image["id"], out, progress=received.append) == len(data)
        assert out.getvalue() == data and received[-1] == len(data)
        assert received == sorted(received)
        client.import_image(image["id"], "copy-image", stores=["dcn0"])
        done = client.wait(image["id"], ["dcn0"], progress=lambda d, t: jobs.append((d, t)))
        assert done["stores"] == "dcn0,default_backend"
        assert jobs[-1] == (len(data), len(data))  # the task's job view, complete
        (task,) = client.tasks(image["id"])
        assert task["status"] == "success"
        other = client.create(name="t")
        paged = [i["id"] for i in client.images(limit="1")]  # one image a page: follows next
        assert sorted(paged) == sorted([other["id"], image["id"]])


WEBOB_PAGE = """<html>
 <head>
  <title>404 Not Found</title>
 </head>
 <body>
  <h1>404 Not Found</h1>
  No image found with ID &#x27;x&#x27;<br /><br />


 </body>
</html>"""


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(404, html=WEBOB_PAGE), "No image found with ID 'x'"),
        (
            httpx.Response(415, json={"message": "The request media type application/octet-stream"
                " is not supported by this server.\n<br /><br />\nImage disk_format qcow2 does"
                " not match stream data raw<br /><br />\n\n\n", "code": "415"}),
            "Image disk_format qcow2 does not match stream data raw",
        ),
        (httpx.Response(503, text="upstream\n  is down\n"), "upstream is down"),
        (httpx.Response(502), "502 Bad Gateway"),
    ],
)  # fmt: skip
def test_error_messages_are_one_clean_line(response: httpx.Response, message: str) -> None:
    assert error_message(response) == message
