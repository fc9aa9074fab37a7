"""Hostile and oversized requests get a clear 4xx, in flat memory and time; slow clients are cut."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry.api.server import RepeatFilter
from ferry.block import ImageSpec
from ferry.block.embedded import EmbeddedCluster
from ferry.errors import InvalidRequest
from tests.api.conftest import Site, start_site

CAP = 1 << 20  # the fuzzed site's image_size_cap: small, so over-cap bodies are cheap to send
LIMITS = {"image_size_cap": CAP, "header_timeout": 1.0, "body_timeout": 2.0, "max_connections": 40}
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One embedded site with small size cap, short timeouts and few connections."""
    tmp = tmp_path_factory.mktemp("limits")
    EmbeddedCluster.init(tmp / "default_backend", "default_backend")
    yield from start_site(tmp, {"default_backend": str(tmp / "default_backend")}, limits=LIMITS)


@pytest.fixture
def http(site: Site) -> Iterator[httpx.Client]:
    with site.http() as client:
        yield client


def _image(http: httpx.Client, **body: Any) -> str:
    r = http.post("/v2/images", json={"disk_format": "raw", "container_format": "bare", **body})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _message(r: httpx.Response) -> str:
    return r.text.replace("<br />", "").strip()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# --- image data: the size cap ---------------------------------------------------------------
@pytest.mark.parametrize("declared", [2**63, 10**30, CAP + 1])
def test_a_declared_size_over_the_cap_is_refused_before_anything_is_allocated(
    site: Site, http: httpx.Client, declared: int
) -> None:
    image_id = _image(http)
    before = _rss(site.pid)
    r = http.put(
        f"/v2/images/{image_id}/file",
        content=b"abc",
        headers={
            "Content-Type": "application/octet-stream",
            "x-openstack-image-size": str(declared),
        },
    )
    assert r.status_code == 413
    assert f"Denying attempt to upload image larger than {CAP} bytes." in r.text
    assert _rss(site.pid) - before < 64 << 20  # flat: 2^63 bytes once grew it to 23 GB
    shown = http.get(f"/v2/images/{image_id}").json()
    assert shown["status"] == "queued" and shown.get("size") is None


def test_a_body_longer_than_the_cap_is_cut_off(http: httpx.Client) -> None:
    image_id = _image(http)

    def body() -> Iterator[bytes]:  # chunked: no length to check up front
        for _ in range(CAP // 65536 + 2):
            yield b"x" * 65536

    r = http.put(f"/v2/images/{image_id}/file", content=body())
    assert r.status_code == 413
    assert "Denying attempt to upload image larger than" in r.text
    assert http.get(f"/v2/images/{image_id}").json()["status"] == "queued"
    staged = _image(http)
    r = http.put(f"/v2/images/{staged}/stage", content=body())
    assert r.status_code == 413


def test_a_body_longer_than_its_declared_size_is_cut_off(http: httpx.Client) -> None:
    image_id = _image(http)

    def body() -> Iterator[bytes]:
        yield b"abc"
        yield b"defgh"

    r = http.put(
        f"/v2/images/{image_id}/file", content=body(), headers={"x-openstack-image-size": "3"}
    )
    assert r.status_code == 400
    assert "more than the 3 bytes" in r.text
    assert http.get(f"/v2/images/{image_id}").json()["status"] == "queued"


def test_the_block_layer_refuses_absurd_sizes(tmp_path: Path) -> None:
    EmbeddedCluster.init(tmp_path / "c", "c")
    with EmbeddedCluster.connect(tmp_path / "c") as cluster:
        with pytest.raises(InvalidRequest, match="larger than the most"):
            cluster.create("images", "huge", 2**63)
        cluster.create("images", "small", 4096)
        with cluster.open(ImageSpec("images", "small")) as image, pytest.raises(InvalidRequest):
            image.resize(2**63)


# --- request bodies -------------------------------------------------------------------------
def test_a_deeply_nested_body_is_400(http: httpx.Client) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert http.post("/v2/images", content=deep).status_code == 400
    r = http.post("/v3/volumes", content=b'{"volume":' + deep + b"}")
    assert r.status_code == 400


def test_a_lone_surrogate_is_400(http: httpx.Client) -> None:
    r = http.post("/v2/images", content=b'{"name": "\\ud800"}')
    assert r.status_code == 400
    assert "lone surrogates" in r.text


def test_min_disk_past_the_column_is_400(http: httpx.Client) -> None:
    assert http.post("/v2/images", json={"min_disk": 2**63}).status_code == 400
    image_id = _image(http)
    op = [{"op": "replace", "path": "/min_disk", "value": 2**31}]
    assert http.patch(f"/v2/images/{image_id}", json=op, headers=PATCH).status_code == 400


def test_a_huge_task_limit_is_clamped(http: httpx.Client) -> None:
    assert http.get("/v2/tasks", params={"limit": str(10**20)}).status_code == 200
    assert http.get("/v2/images", params={"limit": str(10**20)}).status_code == 200


def test_a_patch_of_non_objects_is_400(http: httpx.Client) -> None:
    image_id = _image(http)
    r = http.patch(f"/v2/images/{image_id}", json=[1, 2, 3], headers=PATCH)
    assert r.status_code == 400
    assert "Operations must be JSON objects." in r.text


def test_a_body_over_a_mebibyte_is_413_even_without_a_length(http: httpx.Client) -> None:
    big = {"name": "x", "huge": "v" * (50 << 20)}
    r = http.post("/v2/images", json=big)
    assert r.status_code == 413
    assert "Request is too large." in r.text

    def chunks() -> Iterator[bytes]:
        yield b'{"volume": {"size": 1, "name": "'
        for _ in range(20):
            yield b"n" * 65536
        yield b'"}}'

    assert http.post("/v3/volumes", content=chunks()).status_code == 413
    assert http.get("/v2/images").status_code == 200


# --- what an image may hold -----------------------------------------------------------------
def test_properties_and_tags_are_within_glances_quotas(http: httpx.Client) -> None:
    props = {f"p{i}": "v" for i in range(129)}
    r = http.post("/v2/images", json=props)
    assert r.status_code == 413
    assert "number of allowed image properties. Attempted: 129, Maximum: 128" in r.text
    r = http.post("/v2/images", json={"tags": [f"t{i}" for i in range(129)]})
    assert r.status_code == 413
    assert "number of allowed image tags. Attempted: 129, Maximum: 128" in r.text

    image_id = _image(
        http, tags=[f"t{i}" for i in range(128)], **{f"p{i}": "v" for i in range(128)}
    )
    assert http.put(f"/v2/images/{image_id}/tags/t0").status_code == 204  # already there
    assert http.put(f"/v2/images/{image_id}/tags/one-more").status_code == 413
    op = [{"op": "add", "path": "/one-more", "value": "v"}]
    assert http.patch(f"/v2/images/{image_id}", json=op, headers=PATCH).status_code == 413
    shown = http.get(f"/v2/images/{image_id}").json()
    assert len(shown["tags"]) == 128 and "one-more" not in shown


def test_property_keys_and_values_are_bounded(http: httpx.Client) -> None:
    assert http.post("/v2/images", json={"k" * 256: "v"}).status_code == 400
    assert http.post("/v2/images", json={"key": "v" * 65536}).status_code == 400
    assert http.post("/v2/images", json={"key": "v" * 65535}).status_code == 201


@pytest.mark.parametrize(
    "body", [{"name": "a\x00b"}, {"k\x00ey": "v"}, {"key": "v\x00"}], ids=["name", "key", "value"]
)
def test_nul_characters_are_400(http: httpx.Client, body: dict[str, str]) -> None:
    r = http.post("/v2/images", json=body)
    assert r.status_code == 400
    assert "NUL" in r.text


def test_a_nul_in_a_tag_is_400(http: httpx.Client) -> None:
    image_id = _image(http)
    assert http.put(f"/v2/images/{image_id}/tags/a%00b").status_code == 400
    assert (
        http.post("/v3/volumes", json={"volume": {"size": 1, "name": "a\x00"}}).status_code == 400
    )


def test_a_local_file_location_is_refused(http: httpx.Client) -> None:
    image_id = _image(http)
    for value in ([{"url": "file:///etc/passwd", "metadata": {}}], {"url": "file:///etc/passwd"}):
        op = [{"op": "add", "path": "/locations", "value": value}]
        r = http.patch(f"/v2/images/{image_id}", json=op, headers=PATCH)
        assert r.status_code == 400
        assert "Invalid location" in r.text
    op = [{"op": "add", "path": "/locations", "value": [{"url": "http://x/y", "metadata": {}}]}]
    assert http.patch(f"/v2/images/{image_id}", json=op, headers=PATCH).status_code == 403
    assert http.get(f"/v2/images/{image_id}").json()["locations"] == []


@pytest.mark.parametrize("size", [10**20, 2**40])
def test_volume_sizes_are_bounded(http: httpx.Client, size: int) -> None:
    r = http.post("/v3/volumes", json={"volume": {"size": size}})
    assert r.status_code == 413
    assert "is larger than maximum allowed limit 16384G" in r.text
    assert (
        http.post("/v2.1/servers", json={"server": {"boot_volume_size": size}}).status_code == 413
    )
    assert all(v["size"] != size for v in http.get("/v3/volumes").json()["volumes"])


# --- connections ----------------------------------------------------------------------------
def _connect(site: Site) -> socket.socket:
    host, port = site.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_a_half_sent_request_is_dropped_after_the_header_timeout(
    site: Site, http: httpx.Client
) -> None:
    slow = [_connect(site) for _ in range(5)]
    for sock in slow:
        sock.sendall(b"GET /v2/images HTTP/1.1\r\nHost: x\r\n")  # never finished
    assert http.get("/v2/images").status_code == 200  # others are served meanwhile
    started = time.monotonic()
    for sock in slow:
        with sock:
            assert _read_all(sock).startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 25  # dropped, not held (a generous hang detector)


def test_a_stalled_body_is_dropped_and_the_upload_undone(site: Site, http: httpx.Client) -> None:
    image_id = _image(http)
    with _connect(site) as sock:
        sock.sendall(
            f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            "Content-Type: application/octet-stream\r\n\r\nabc".encode()
        )
        assert _read_all(sock) == b""  # closed without an answer
    for _ in range(100):
        if http.get(f"/v2/images/{image_id}").json()["status"] == "queued":
            break
        time.sleep(0.1)
    assert http.get(f"/v2/images/{image_id}").json()["status"] == "queued"


def test_connections_past_the_cap_are_turned_away_at_once(site: Site, http: httpx.Client) -> None:
    held = [_connect(site) for _ in range(60)]
    try:
        turned_away = 0
        for sock in held[45:]:  # past max_connections (40): answered and closed at once
            reply = _read_all(sock)
            turned_away += reply.startswith(b"HTTP/1.1 503 ")
        assert turned_away == 15
    finally:
        for sock in held:
            sock.close()
    for _ in range(50):  # the closed ones leave; the site serves again
        if http.get("/versions").status_code == 200:
            break
        time.sleep(0.1)
    assert http.get("/v2/images").status_code == 200


def test_repeated_log_lines_are_counted_not_written() -> None:
    passed: list[str] = []
    log = logging.getLogger("ferry.test.repeats")
    log.propagate = False
    handler = logging.Handler()
    handler.emit = lambda record: passed.append(record.getMessage())  # type: ignore[method-assign]
    log.addHandler(handler)
    log.addFilter(RepeatFilter(0.5))
    for _ in range(1000):
        log.error("accept failed: %s", "Too many open files")
    log.error("another line")
    assert passed == ["accept failed: Too many open files", "another line"]
    time.sleep(0.6)
    log.error("accept failed: %s", "Too many open files")
    assert passed[-1].startswith("accept failed: Too many open files (999 identical lines")


def test_the_request_body_is_json_checked_once_per_route(http: httpx.Client) -> None:
    """Routes FastAPI parses (volumes) and routes ferry parses (images) refuse alike."""
    for path in ("/v2/images", "/v3/volumes"):
        r = http.post(path, content=json.dumps({"name": "\x00"}).encode())
        assert r.status_code == 400, path
