"""What Tempest's tempest.api.image.v2 asks of the Image API beyond the reference workflow:
the v2.0 JSON-patch form, Glance's 404s and 405s and their bodies, the health check, the
tasks API's create and a web-download of a host that does not resolve (the locations API is
in test_image_locations.py, on the same kind of site)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry.block.embedded import EmbeddedCluster
from tests.api.conftest import Site, start_site

V20 = {"Content-Type": "application/openstack-images-v2.0-json-patch"}
JSON = {"Accept": "application/json"}


def gaps_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A site with stores default_backend and dcn0 (embedded), and http; it lets clients
    manage locations by PATCH (Tempest's extended run)."""
    tmp = tmp_path_factory.mktemp("gaps")
    clusters = {}
    for name in ("default_backend", "dcn0"):
        EmbeddedCluster.init(tmp / name, name)
        clusters[name] = str(tmp / name)
    yield from start_site(tmp, clusters, imports={"manage_locations": True})


def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server on 127.0.0.1 (the site allows it) serving a directory."""
    root = tmp_path_factory.mktemp("www")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def gaps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from gaps_site(tmp_path_factory)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    yield from web_server(tmp_path_factory)


@pytest.fixture
def http(gaps: Site) -> Iterator[httpx.Client]:
    with gaps.http() as client:
        yield client


def new_image(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"name": "gap", "disk_format": "raw", "container_format": "bare", **fields}
    r = http.post("/v2/images", json=body)
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


def message(r: httpx.Response) -> str:
    """The text of a Glance JSON error body (asked for with Accept: application/json)."""
    text: str = r.json()["message"]
    return text.split("<br")[0]


def wait_for(probe: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return found


def tasks_settled(http: httpx.Client, image_id: str) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = http.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        return (
            found if found and all(t["status"] in ("success", "failure") for t in found) else None
        )

    settled: list[dict[str, Any]] = wait_for(done)
    return settled


# --- 1. the v2.0 JSON-patch media type --------------------------------------------------------
def test_v20_patch_replaces_adds_and_removes(http: httpx.Client) -> None:
    image = new_image(http)
    ops = [
        {"replace": "/name", "value": "renamed"},
        {"add": "/speed", "value": "88mph"},
        {"add": "/os_distro", "value": "rhel"},
    ]
    r = http.patch(f"/v2/images/{image['id']}", json=ops, headers=V20)
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["speed"], r.json()["os_distro"]) == (
        "renamed",
        "88mph",
        "rhel",
    )
    r = http.patch(f"/v2/images/{image['id']}", json=[{"remove": "/speed"}], headers=V20)
    assert r.status_code == 200, r.text
    assert "speed" not in r.json() and r.json()["os_distro"] == "rhel"


def test_v20_patch_keeps_glances_rules(http: httpx.Client) -> None:
    image_id = new_image(http, os_distro="rhel")["id"]

    def patch(ops: Any) -> tuple[int, str]:
        r = http.patch(f"/v2/images/{image_id}", json=ops, headers={**V20, **JSON})
        return r.status_code, message(r)

    # v2.0's add never overwrites (v2.1's does)
    assert patch([{"add": "/os_distro", "value": "x"}]) == (
        409,
        "Property os_distro already present.",
    )
    assert patch([{"add": "/os_glance_foo", "value": "bar"}])[0] == 403  # reserved
    assert patch([{"replace": "/nope", "value": "x"}])[0] == 409
    assert patch([{"op": "replace", "path": "/name", "value": "x"}]) == (
        400,
        'Operation objects must contain exactly one member named "add", "remove", or "replace".',
    )
    assert patch([{"add": "/a", "replace": "/b", "value": "x"}]) == (
        400,
        'Operation objects must contain only one member named "add", "remove", or "replace".',
    )
    assert http.get(f"/v2/images/{image_id}").json()["os_distro"] == "rhel"


# --- 3. web-download of a host that does not resolve --------------------------------------------
def test_web_download_of_an_unresolvable_host_fails_in_its_task(http: httpx.Client) -> None:
    """Glance accepts it (202) and the task fails; internal addresses stay refused up front."""
    image_id = new_image(http)["id"]
    body = {
        "method": {"name": "web-download", "uri": "http://does-not.exist/no/possible/way"},
        "stores": ["default_backend"],
    }
    r = http.post(f"/v2/images/{image_id}/import", json=body)
    assert r.status_code == 202, r.text
    (task,) = tasks_settled(http, image_id)  # the image is marked first, then the task
    assert task["status"] == "failure" and "does-not.exist" in task["message"], task
    doc = http.get(f"/v2/images/{image_id}").json()
    assert (doc["status"], doc["os_glance_failed_import"]) == ("queued", "default_backend")


# --- 2 and 6. Glance's 404s and 405s, in Glance's bodies ------------------------------------
NOT_FOUND_PAGE = (
    "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n"
    "  The resource could not be found.<br /><br />\n\n\n\n </body>\n</html>"
)  # what the real Glance 33 sent for GET /v2/ (reference step 02)


@pytest.mark.parametrize(
    "path",
    ["/v2/images/", "/v2/tasks/", "/v2/info/stores/", "/v2/schemas/image/", "/v2/", "/v2/nope"],
)
def test_unknown_paths_and_trailing_slashes_are_glances_404(http: httpx.Client, path: str) -> None:
    r = http.get(path)
    assert (r.status_code, r.text) == (404, NOT_FOUND_PAGE)
    assert r.headers["content-type"] == "text/html; charset=UTF-8"
    assert r.headers["x-openstack-request-id"].startswith("req-")
    r = http.get(path, headers=JSON)
    assert r.status_code == 404
    assert r.json() == {
        "message": "The resource could not be found.<br /><br />\n\n\n",
        "code": "404 Not Found",
        "title": "Not Found",
    }


@pytest.mark.parametrize(
    "path", ["/v2/images", "/v2/tasks", "/v2/info/stores", "/v2/info/import", "/v2/schemas/image"]
)
def test_paths_without_the_slash_still_answer(http: httpx.Client, path: str) -> None:
    assert http.get(path).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v2/images", "GET, POST"),
        ("POST", "/v2/images/{id}", "GET, PATCH, DELETE"),
        ("DELETE", "/v2/images/{id}/file", "GET, PUT"),
        ("POST", "/v2/images/{id}/tasks", "GET"),
        ("PATCH", "/v2/tasks", "GET, POST"),
    ],
)
def test_a_method_not_allowed_is_glances_405(
    http: httpx.Client, method: str, path: str, allow: str
) -> None:
    path = path.format(id=new_image(http)["id"])
    r = http.request(method, path, headers=JSON)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.json()["code"] == "405 Method Not Allowed"
    assert message(r) == f"The method {method} is not allowed for this resource."


def test_an_unparsable_body_is_a_glance_400(http: httpx.Client) -> None:
    r = http.post("/v3/volumes", json={"volume": {"size": 0}}, headers=JSON)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "400 Bad Request"
    assert message(r).startswith("Invalid input: volume.size: ")
    assert "detail" not in r.json()


# --- 5. the health check ---------------------------------------------------------------------
def test_healthcheck_is_olso_middlewares_plain_ok(gaps: Site) -> None:
    r = httpx.get(f"{gaps.url}/healthcheck")  # no token
    assert (r.status_code, r.text) == (200, "OK")
    assert r.headers["content-type"] == "text/plain; charset=UTF-8"
    assert "x-openstack-request-id" not in r.headers
    assert httpx.head(f"{gaps.url}/healthcheck").status_code == 204


# --- 4. the tasks API's create ------------------------------------------------------------------
def legacy_task(import_from: str, disk_format: str = "raw") -> dict[str, Any]:
    """The body Tempest's test_image_task sends."""
    properties = {
        "container_format": "bare",
        "disk_format": disk_format,
        "visibility": "public",
        "name": "task_image",
    }
    return {
        "type": "import",
        "input": {
            "image_properties": properties,
            "import_from_format": disk_format,
            "import_from": import_from,
        },
    }


def settled_task(http: httpx.Client, task_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        task: dict[str, Any] = http.get(f"/v2/tasks/{task_id}").json()
        return task if task["status"] in ("success", "failure") else None

    found: dict[str, Any] = wait_for(done)
    return found


def test_an_import_task_makes_an_image_from_a_url(
    http: httpx.Client, web: tuple[str, Path]
) -> None:
    base, root = web
    data = bytes(range(256)) * 4096
    (root / "disk.raw").write_bytes(data)
    r = http.post("/v2/tasks", json=legacy_task(f"{base}/disk.raw"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert r.headers["location"] == f"/v2/tasks/{created['id']}"
    assert created["type"] == "import" and created["status"] in ("pending", "processing")
    assert created["input"]["import_from"] == f"{base}/disk.raw"
    task = settled_task(http, created["id"])
    assert task["status"] == "success", task["message"]
    image = http.get(f"/v2/images/{task['result']['image_id']}").json()
    assert (image["status"], image["name"], image["visibility"]) == (
        "active",
        "task_image",
        "public",
    )
    assert image["disk_format"] == "raw" and image["stores"] == "default_backend"
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()


def test_an_import_task_from_an_unresolvable_host_fails(http: httpx.Client) -> None:
    """Tempest's test_task_create_fake_image_location: 201, then the task fails."""
    r = http.post("/v2/tasks", json=legacy_task("http://tempest-dummy-img-file-1.qcow2", "qcow2"))
    assert r.status_code == 201, r.text
    task = settled_task(http, r.json()["id"])
    assert task["status"] == "failure" and "tempest-dummy-img-file-1" in task["message"], task


def test_a_task_glance_cannot_run_fails_and_a_body_that_is_no_task_is_a_400(
    http: httpx.Client,
) -> None:
    def post(body: Any) -> tuple[int, str]:
        r = http.post("/v2/tasks", json=body, headers=JSON)
        return r.status_code, message(r) if r.status_code >= 400 else r.json()["status"]

    def task_images() -> int:
        return sum(i["name"] == "task_image" for i in http.get("/v2/images").json()["images"])

    assert post({"input": {}}) == (400, "Task 'type' is required")
    assert post({"type": "import"}) == (400, "Task 'input' is required")
    assert post({"type": "export", "input": {}})[0] == 400  # not in the task schema
    before = task_images()
    task = legacy_task("http://169.254.169.254/latest/meta-data/")
    assert post(task) == (201, "failure")  # refused by the web-download guard
    del task["input"]["import_from"]
    r = http.post("/v2/tasks", json=task)
    assert (r.status_code, r.json()["status"]) == (201, "failure")
    assert r.json()["message"] == "Input does not contain 'import_from' field"
    assert task_images() == before  # neither left an image behind
