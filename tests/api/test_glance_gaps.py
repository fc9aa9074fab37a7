"""What Tempest's tempest.api.image.v2 asks of the Image API beyond the reference workflow:
the v2.0 JSON-patch form, Glance's 404s and 405s and their bodies, the health check, the
tasks API's create, a web-download of a host that does not resolve, and the locations API."""

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

from ferry.block import ImageSpec, connect
from ferry.block.embedded import EmbeddedCluster
from tests.api.conftest import Site, start_site

V20 = {"Content-Type": "application/openstack-images-v2.0-json-patch"}
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def gaps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One site for the module: stores default_backend and dcn0 (embedded), and http; it
    lets clients manage locations by PATCH (Tempest's extended run)."""
    tmp = tmp_path_factory.mktemp("gaps")
    clusters = {}
    for name in ("default_backend", "dcn0"):
        EmbeddedCluster.init(tmp / name, name)
        clusters[name] = str(tmp / name)
    yield from start_site(tmp, clusters, imports={"manage_locations": True})


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
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


# --- 7. the locations API (v2.17) -----------------------------------------------------------
def tasks_settled(http: httpx.Client, image_id: str) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = http.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        return (
            found if found and all(t["status"] in ("success", "failure") for t in found) else None
        )

    settled: list[dict[str, Any]] = wait_for(done)
    return settled


@pytest.fixture
def served(web: tuple[str, Path]) -> tuple[str, bytes]:
    """An image file on the local web server: its URL and its bytes."""
    base, root = web
    data = bytes(range(256)) * 2048 + b"tail"
    (root / "located.raw").write_bytes(data)
    return f"{base}/located.raw", data


def test_an_http_location_with_matching_validation_data(
    gaps: Site, http: httpx.Client, served: tuple[str, bytes]
) -> None:
    url, data = served
    image_id = new_image(http, visibility="private")["id"]
    sha256 = hashlib.sha256(data).hexdigest()
    r = http.post(
        f"/v2/images/{image_id}/locations",
        json={"url": url, "validation_data": {"os_hash_algo": "sha256", "os_hash_value": sha256}},
    )
    assert r.status_code == 202, r.text
    (task,) = tasks_settled(http, image_id)
    assert (task["type"], task["status"]) == ("location_import", "success"), task["message"]
    image = http.get(f"/v2/images/{image_id}").json()
    assert (image["status"], image["os_hash_algo"], image["os_hash_value"]) == (
        "active",
        "sha256",
        sha256,
    )
    assert image["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest() and image[
        "size"
    ] == len(data)
    assert image["stores"] == "http" and image["locations"][0]["url"] == url
    listed = http.get(f"/v2/images/{image_id}/locations").json()
    assert listed == [{"url": url, "metadata": {"store": "http"}}]
    # Downloads read the URL, as Glance's http store does; a range is cut from it.
    assert http.get(f"/v2/images/{image_id}/file").content == data
    part = http.get(f"/v2/images/{image_id}/file", headers={"Range": "bytes=1000-70000"})
    assert (part.status_code, part.content) == (206, data[1000:70001])
    # Only a queued image takes a location.
    r = http.post(f"/v2/images/{image_id}/locations", json={"url": url}, headers=JSON)
    assert r.status_code == 409, r.text
    # Its data is the URL's; deleting the image leaves the URL alone and forgets it.
    assert http.delete(f"/v2/images/{image_id}").status_code == 204
    assert http.get(f"/v2/images/{image_id}").status_code == 404
    log = (gaps.config.parent / "serve.log").read_text()
    assert f"could not delete {image_id}" not in log  # nothing left for the reconciler


def test_an_http_location_without_validation_data_is_active_and_hashed(
    http: httpx.Client, served: tuple[str, bytes]
) -> None:
    url, data = served
    image_id = new_image(http)["id"]
    r = http.post(f"/v2/images/{image_id}/locations", json={"url": url, "validation_data": {}})
    assert r.status_code == 202, r.text
    assert http.get(f"/v2/images/{image_id}").json()["status"] == "active"  # at once
    (task,) = tasks_settled(http, image_id)
    assert task["status"] == "success", task["message"]
    image = http.get(f"/v2/images/{image_id}").json()
    assert (image["os_hash_algo"], image["os_hash_value"], image["checksum"]) == (
        "sha512",
        hashlib.sha512(data).hexdigest(),
        hashlib.md5(data, usedforsecurity=False).hexdigest(),
    )


def test_an_http_location_whose_data_does_not_match(
    http: httpx.Client, served: tuple[str, bytes]
) -> None:
    url, _ = served
    image_id = new_image(http)["id"]
    wrong = {"os_hash_algo": "sha512", "os_hash_value": "beefdead" * 16}
    r = http.post(f"/v2/images/{image_id}/locations", json={"url": url, "validation_data": wrong})
    assert r.status_code == 202, r.text
    (task,) = tasks_settled(http, image_id)
    assert task["status"] == "failure" and "not matched" in task["message"], task
    image = http.get(f"/v2/images/{image_id}").json()
    assert image["status"] == "queued"
    assert (image["os_hash_algo"], image["os_hash_value"], image["checksum"]) == (None,) * 3
    assert image["stores"] == "http"  # Glance's http store keeps the location (LP #2076648)


def test_malformed_locations_are_refused_up_front(
    http: httpx.Client, served: tuple[str, bytes]
) -> None:
    url, data = served
    image_id = new_image(http)["id"]
    sha512 = hashlib.sha512(data).hexdigest()

    def post(body: dict[str, Any]) -> int:
        return http.post(f"/v2/images/{image_id}/locations", json=body, headers=JSON).status_code

    for validation_data in (
        {"os_hash_algo": "sha512", "os_hash_value": "dbc9e0f80d131e64b94913a7b40bb5"},
        {"os_hash_value": sha512},
        {"os_hash_algo": "sha123", "os_hash_value": sha512},
        {"os_hash_algo": "sha512", "os_hash_value": hashlib.sha256(data).hexdigest()},
    ):
        assert post({"url": url, "validation_data": validation_data}) == 400, validation_data
    assert post({"url": "gopher://info.cern.ch"}) == 400
    assert post({"url": "rbd://0000/images/x/snap"}) == 400  # no store of this site's
    assert post({}) == 400
    assert http.get(f"/v2/images/{image_id}/tasks").json()["tasks"] == []
    assert http.get(f"/v2/images/{image_id}").json()["status"] == "queued"


def test_the_rbd_location_of_the_images_own_block_image(gaps: Site, http: httpx.Client) -> None:
    """What Nova's and Cinder's direct snapshots do: write images/<id>@snap, then add it."""
    image_id = new_image(http)["id"]
    data = b"\x01" * (4 << 20) + b"\x00" * (4 << 20) + b"end"
    cluster = connect(gaps.clusters["default_backend"])
    try:
        cluster.create("images", image_id, len(data))
        with cluster.open(ImageSpec("images", image_id, None)) as block:
            block.write(0, data)
            block.create_snap("snap")
            block.protect_snap("snap")
        url = f"embedded://{cluster.fsid}/images/{image_id}/snap"
    finally:
        cluster.close()
    sha512 = hashlib.sha512(data).hexdigest()
    body = {"url": url, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": sha512}}
    r = http.post(f"/v2/images/{image_id}/locations", json=body)
    assert r.status_code == 202, r.text
    (task,) = tasks_settled(http, image_id)
    assert task["status"] == "success", task["message"]
    image = http.get(f"/v2/images/{image_id}").json()
    assert (image["status"], image["stores"], image["size"]) == (
        "active",
        "default_backend",
        len(data),
    )
    assert http.get(f"/v2/images/{image_id}/file").content == data


# --- 7. locations by JSON patch (Glance's show_multiple_locations) ------------------------------
def patch(http: httpx.Client, image_id: str, ops: list[dict[str, Any]]) -> httpx.Response:
    return http.patch(f"/v2/images/{image_id}", json=ops, headers={**V20, **JSON})


def test_a_location_added_by_patch_makes_a_queued_image_active(
    http: httpx.Client, served: tuple[str, bytes]
) -> None:
    """Tempest's check_set_location: no hashing, the location as given."""
    url, data = served
    image_id = new_image(http)["id"]
    r = patch(
        http, image_id, [{"add": "/locations/-", "value": {"url": url, "metadata": {"foo": "bar"}}}]
    )
    assert r.status_code == 200, r.text
    image = http.get(f"/v2/images/{image_id}").json()
    assert image["locations"] == [{"url": url, "metadata": {"foo": "bar", "store": "http"}}]
    assert (image["status"], image["direct_url"], image["size"]) == ("active", url, len(data))
    assert (image["os_hash_algo"], image["os_hash_value"]) == (None, None)
    assert http.get(f"/v2/images/{image_id}/file").content == data
    # Only the site's stores' own URLs; one location per store.
    gopher = {"url": "gopher://info.cern.ch", "metadata": {}}
    assert patch(http, image_id, [{"add": "/locations/-", "value": gopher}]).status_code == 400
    again = {"url": f"{url}#new", "metadata": {}}
    assert patch(http, image_id, [{"add": "/locations/-", "value": again}]).status_code == 400


def test_validation_data_given_with_a_location_by_patch(
    http: httpx.Client, served: tuple[str, bytes]
) -> None:
    """Tempest's _check_set_location_with_hash and ..._not_matching."""
    url, _ = served
    image_id = new_image(http)["id"]
    given = {"checksum": "1" * 32, "os_hash_value": "deadbeef" * 16, "os_hash_algo": "sha512"}
    value = {"url": url, "metadata": {}, "validation_data": given}
    assert patch(http, image_id, [{"add": "/locations/-", "value": value}]).status_code == 200
    image = http.get(f"/v2/images/{image_id}").json()
    assert (image["checksum"], image["os_hash_value"], image["os_hash_algo"]) == (
        "1" * 32,
        "deadbeef" * 16,
        "sha512",
    )
    assert image["status"] == "active" and "validation_data" not in image["locations"][0]
    for key, other in (("checksum", "2" * 32), ("os_hash_value", "beefdead" * 16)):
        changed = {**value, "url": f"{url}#new", "validation_data": {**given, key: other}}
        r = patch(http, image_id, [{"add": "/locations/-", "value": changed}])
        assert (r.status_code, message(r)) == (409, f"{key} is already set with a different value")
    assert http.get(f"/v2/images/{image_id}").json() == image


def test_removing_and_relabelling_locations_by_patch(
    gaps: Site, http: httpx.Client, served: tuple[str, bytes]
) -> None:
    """Tempest's test_delete_locations and test_replace_location, over two stores."""
    url, data = served
    image_id = new_image(http)["id"]
    r = http.put(
        f"/v2/images/{image_id}/file",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 204, r.text
    http_loc = {"url": url, "metadata": {"speed": "88mph"}}
    assert patch(http, image_id, [{"add": "/locations/-", "value": http_loc}]).status_code == 200
    locs = http.get(f"/v2/images/{image_id}").json()["locations"]
    assert [loc["metadata"]["store"] for loc in locs] == ["default_backend", "http"]
    # Replacing with the same locations is fine, and may change their metadata only.
    assert patch(http, image_id, [{"replace": "/locations", "value": locs}]).status_code == 200
    locs[0]["metadata"]["date"] = "2015-10-15"
    assert patch(http, image_id, [{"replace": "/locations", "value": locs}]).status_code == 200
    assert http.get(f"/v2/images/{image_id}").json()["locations"] == locs
    assert patch(http, image_id, [{"replace": "/locations", "value": locs[:1]}]).status_code == 400
    moved = [locs[0], {**locs[1], "url": f"{url}#new3"}]
    assert patch(http, image_id, [{"replace": "/locations", "value": moved}]).status_code == 400
    # Removing one drops its data too; the last one stays.
    assert patch(http, image_id, [{"remove": "/locations/0"}]).status_code == 200
    image = http.get(f"/v2/images/{image_id}").json()
    assert [loc["url"] for loc in image["locations"]] == [url] and image["direct_url"] == url
    assert image_id not in blocks_of(gaps, "default_backend")
    r = patch(http, image_id, [{"remove": "/locations/0"}])
    assert (r.status_code, message(r)) == (403, "Cannot remove last location in the image.")


def blocks_of(site: Site, store: str) -> list[str]:
    cluster = connect(site.clusters[store])
    try:
        return cluster.list_images("images")
    finally:
        cluster.close()
