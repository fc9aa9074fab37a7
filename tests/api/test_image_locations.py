"""Image API v2.17's locations API and locations by JSON patch (Glance's
show_multiple_locations), as Tempest's location tests drive them, on a site whose http store
holds URLs of a local web server and whose imports.manage_locations is on."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry.block import ImageSpec, connect
from tests.api.conftest import Site
from tests.api.test_glance_gaps import (
    JSON,
    V20,
    gaps_site,
    message,
    new_image,
    tasks_settled,
    web_server,
)


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


# --- 7. the locations API (v2.17) -----------------------------------------------------------
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
    # Only the site's stores' own URLs, each once.
    gopher = {"url": "gopher://info.cern.ch", "metadata": {}}
    assert patch(http, image_id, [{"add": "/locations/-", "value": gopher}]).status_code == 400
    again = {"url": url, "metadata": {}}
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


def test_several_urls_in_the_http_store(http: httpx.Client, served: tuple[str, bytes]) -> None:
    """Tempest's check_set_multiple_locations, test_replace_location, test_delete_locations:
    ``<url>`` and ``<url>#new`` both in the http store, kept in order."""
    url, data = served
    image_id = new_image(http)["id"]
    for value in ({"url": url, "metadata": {"foo": "bar"}},
                  {"url": f"{url}#new", "metadata": {"speed": "88mph"}}):  # fmt: skip
        assert patch(http, image_id, [{"add": "/locations/-", "value": value}]).status_code == 200
    image = http.get(f"/v2/images/{image_id}").json()
    locs = image["locations"]
    assert [loc["url"] for loc in locs] == [url, f"{url}#new"] and locs[1]["metadata"] == {
        "speed": "88mph",
        "store": "http",
    }
    assert (image["status"], image["direct_url"], image["stores"]) == ("active", url, "http")
    assert (image["os_hash_algo"], image["os_hash_value"]) == (None, None)
    assert http.get(f"/v2/images/{image_id}/locations").json() == locs
    assert http.get(f"/v2/images/{image_id}/file").content == data
    # Replace: the same URLs in order, their metadata changed in place; nothing else.
    assert patch(http, image_id, [{"replace": "/locations", "value": locs}]).status_code == 200
    locs[0]["metadata"]["date"] = "2015-10-15"
    assert patch(http, image_id, [{"replace": "/locations", "value": locs}]).status_code == 200
    assert patch(http, image_id, [{"replace": "/locations", "value": locs[:1]}]).status_code == 400
    moved = [locs[0], {**locs[1], "url": f"{url}#new3"}]
    assert patch(http, image_id, [{"replace": "/locations", "value": moved}]).status_code == 400
    assert http.get(f"/v2/images/{image_id}").json()["locations"] == locs
    # Remove by position: the first goes, the other becomes direct_url; not the last.
    assert patch(http, image_id, [{"remove": "/locations/0"}]).status_code == 200
    image = http.get(f"/v2/images/{image_id}").json()
    assert image["locations"] == locs[1:] and image["direct_url"] == f"{url}#new"
    assert http.get(f"/v2/images/{image_id}/file").content == data
    assert patch(http, image_id, [{"remove": "/locations/0"}]).status_code == 403
    assert http.delete(f"/v2/images/{image_id}").status_code == 204
    assert http.get(f"/v2/images/{image_id}").status_code == 404


def test_a_second_url_with_the_images_hashes(http: httpx.Client, served: tuple[str, bytes]) -> None:
    """Tempest's test_set_location_with_hash_second_matching (and ..._not_matching: 409)."""
    url, _ = served
    image_id = new_image(http)["id"]
    given = {"checksum": "1" * 32, "os_hash_value": "deadbeef" * 16, "os_hash_algo": "sha512"}
    for n, loc_url in enumerate((url, f"{url}#new", f"{url}#new")):
        value = {"url": loc_url, "metadata": {}, "validation_data": given}
        r = patch(http, image_id, [{"add": "/locations/-", "value": value}])
        assert r.status_code == (400 if n == 2 else 200), r.text  # the same URL twice: 400
    image = http.get(f"/v2/images/{image_id}").json()
    assert len(image["locations"]) == 2 and image["status"] == "active"
    assert [image[k] for k in given] == list(given.values())
    assert all("validation_data" not in loc for loc in image["locations"])
    other = {**given, "os_hash_value": "beefdead" * 16}
    value = {"url": f"{url}#other", "metadata": {}, "validation_data": other}
    assert patch(http, image_id, [{"add": "/locations/-", "value": value}]).status_code == 409
    assert len(http.get(f"/v2/images/{image_id}").json()["locations"]) == 2


def test_stores_delete_drops_every_url_of_the_http_store(
    gaps: Site, http: httpx.Client, served: tuple[str, bytes]
) -> None:
    """``DELETE /v2/stores/http/ID``: all the store's URLs go; not if it is the only store."""
    url, data = served
    only_http, image_id = new_image(http)["id"], new_image(http)["id"]
    r = http.put(f"/v2/images/{image_id}/file", content=data,
                 headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 204, r.text
    for some_id in (only_http, image_id):
        for loc_url in (url, f"{url}#new"):
            value = {"url": loc_url, "metadata": {}}
            assert (
                patch(http, some_id, [{"add": "/locations/-", "value": value}]).status_code == 200
            )
    assert http.delete(f"/v2/stores/http/{only_http}").status_code == 403  # its only store
    assert http.get(f"/v2/images/{image_id}").json()["stores"] == "default_backend,http"
    assert http.delete(f"/v2/stores/http/{image_id}").status_code == 204
    image = http.get(f"/v2/images/{image_id}").json()
    assert (image["stores"], len(image["locations"])) == ("default_backend", 1)
    assert http.get(f"/v2/images/{image_id}/file").content == data
    # The block store keeps one location: its own URL again is refused.
    again = {"url": image["direct_url"], "metadata": {}}
    assert patch(http, image_id, [{"add": "/locations/-", "value": again}]).status_code == 400
    assert http.delete(f"/v2/images/{image_id}").status_code == 204
    assert image_id not in blocks_of(gaps, "default_backend")


def blocks_of(site: Site, store: str) -> list[str]:
    cluster = connect(site.clusters[store])
    try:
        return cluster.list_images("images")
    finally:
        cluster.close()
