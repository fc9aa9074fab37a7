"""``/v2/cache`` against a running site: queue, fill, list, serve, evict, clear, recover."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry.block.embedded import EmbeddedCluster
from tests.api.conftest import Site, start_site

MIB = 1 << 20
CLEAR = "x-image-cache-clear-target"


@contextmanager
def _serve(tmp: Path, **extra: Any) -> Iterator[Site]:
    """An embedded site with stores default_backend and dcn0, its cache in ``tmp/cache``."""
    clusters = {}
    for name in ("default_backend", "dcn0"):
        EmbeddedCluster.init(tmp / name, name)
        clusters[name] = str(tmp / name)
    cache = {"directory": str(tmp / "cache"), **extra.pop("cache", {})}
    yield from start_site(tmp, clusters, extra={"cache": cache, **extra})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with _serve(tmp_path_factory.mktemp("cache")) as site:
        yield site


@pytest.fixture
def http(site: Site) -> Iterator[httpx.Client]:
    with site.http() as client:
        yield client
        assert client.delete("/v2/cache").status_code == 204  # each test starts empty


def _image(http: httpx.Client, data: bytes | None, store: str = "dcn0") -> str:
    r = http.post("/v2/images", json={"disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201, r.text
    image_id = str(r.json()["id"])
    if data is not None:
        headers = {"Content-Type": "application/octet-stream", "x-image-meta-store": store}
        r = http.put(f"/v2/images/{image_id}/file", content=data, headers=headers)
        assert r.status_code == 204, r.text
    return image_id


def _cached(http: httpx.Client, image_id: str) -> dict[str, Any]:
    """Queue the image and wait (bounded) until the filler has cached it."""
    assert http.put(f"/v2/cache/{image_id}").status_code == 202
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        doc = http.get("/v2/cache").json()
        for entry in doc["cached_images"]:
            if entry["image_id"] == image_id:
                assert image_id not in doc["queued_images"]
                return dict(entry)
        time.sleep(0.1)
    raise AssertionError(f"image {image_id} was not cached in 30 s")


def _ids(http: httpx.Client) -> tuple[list[str], list[str]]:
    doc = http.get("/v2/cache").json()
    return [e["image_id"] for e in doc["cached_images"]], doc["queued_images"]


def test_a_queued_image_is_cached_with_glances_fields(http: httpx.Client, site: Site) -> None:
    data = os.urandom(3 * MIB + 17)
    image_id = _image(http, data)
    before = time.time()
    entry = _cached(http, image_id)
    assert set(entry) == {"image_id", "hits", "last_accessed", "last_modified", "size"}
    assert entry["size"] == len(data) and entry["hits"] == 0
    assert before - 1 <= entry["last_modified"] <= time.time() + 1
    path = site.config.parent / "cache" / "data" / image_id
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_download_is_served_from_the_cache_and_counted(http: httpx.Client) -> None:
    data = os.urandom(2 * MIB + 5)
    image_id = _image(http, data)
    first = _cached(http, image_id)
    r = http.get(f"/v2/images/{image_id}/file")
    assert r.status_code == 200 and r.content == data
    r = http.get(f"/v2/images/{image_id}/file", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    entry = next(e for e in http.get("/v2/cache").json()["cached_images"])
    assert entry["hits"] == 2 and entry["last_accessed"] >= first["last_accessed"]


def test_unknown_and_dataless_images_cannot_be_queued(http: httpx.Client) -> None:
    assert http.put("/v2/cache/non-existing-image-id").status_code == 404
    assert http.put("/v2/cache/..").status_code == 404
    assert http.put(f"/v2/cache/{_image(http, None)}").status_code == 400
    assert http.delete("/v2/cache/non-existing-image-id").status_code == 404
    assert _ids(http) == ([], [])


def test_delete_and_clear_targets(http: httpx.Client) -> None:
    one, two = _image(http, b"one" * 1000), _image(http, b"two" * 1000)
    _cached(http, one)
    _cached(http, two)
    assert http.delete(f"/v2/cache/{one}").status_code == 204
    assert _ids(http) == ([two], [])
    assert http.delete("/v2/cache", headers={CLEAR: "invalid"}).status_code == 400
    assert http.delete("/v2/cache", headers={CLEAR: "queue"}).status_code == 204
    assert _ids(http)[0] == [two]
    assert http.delete("/v2/cache", headers={CLEAR: "cache"}).status_code == 204
    assert _ids(http) == ([], [])
    _cached(http, one)
    assert http.delete("/v2/cache").status_code == 204  # both
    assert _ids(http) == ([], [])


def test_a_deleted_image_leaves_the_cache(http: httpx.Client) -> None:
    image_id = _image(http, b"gone" * 1000)
    _cached(http, image_id)
    assert http.delete(f"/v2/images/{image_id}").status_code == 204
    assert _ids(http) == ([], [])


def test_the_least_recently_used_image_is_evicted_at_max_size(tmp_path: Path) -> None:
    with _serve(tmp_path, cache={"max_size": 5 * MIB}) as site, site.http() as http:
        a, b, c = (_image(http, os.urandom(2 * MIB)) for _ in range(3))
        _cached(http, a)
        _cached(http, b)
        assert http.get(f"/v2/images/{a}/file").status_code == 200  # a is now the more recent
        _cached(http, c)
        assert sorted(_ids(http)[0]) == sorted([a, c])
        big = _image(http, os.urandom(6 * MIB))  # larger than the whole cache: never cached
        assert http.put(f"/v2/cache/{big}").status_code == 202
        deadline = time.monotonic() + 30
        while _ids(http)[1] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _ids(http) == (_ids(http)[0], []) and big not in _ids(http)[0]


def test_a_fill_cut_off_by_a_crash_is_removed_at_start(tmp_path: Path) -> None:
    data = tmp_path / "cache" / "data"
    data.mkdir(parents=True)
    (data / "0badc0de.part").write_bytes(b"half an image")
    with _serve(tmp_path) as site, site.http() as http:
        assert http.get("/v2/cache").json() == {"cached_images": [], "queued_images": []}
    assert list(data.iterdir()) == []


def test_the_cache_api_is_refused_where_the_policy_says_no(tmp_path: Path) -> None:
    rules = tmp_path / "policy.yaml"
    names = ("cache_list", "cache_image", "cache_delete", "cache_clear")
    rules.write_text("".join(f'"{name}": "!"\n' for name in names))
    auth = {"mode": "noauth", "policy_file": str(rules)}
    with _serve(tmp_path, auth=auth) as site, site.http() as http:
        image_id = _image(http, b"x" * 100)
        assert http.get("/v2/cache").status_code == 403
        assert http.put(f"/v2/cache/{image_id}").status_code == 403
        assert http.delete(f"/v2/cache/{image_id}").status_code == 403
        assert http.delete("/v2/cache").status_code == 403
