"""glance-download against a running site (noauth: its region is the site's name): the copy,
the metadata Glance copies and the one it does not, and each way Glance's tests make it fail."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from ferry.config import parse
from ferry.images.glance_download import regions
from tests.api.conftest import Site
from tests.identity.test_catalog_plan import raw_topology, section

PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
MiB = 1 << 20


def create(http: httpx.Client, **body: Any) -> str:
    body.setdefault("disk_format", "raw")
    body.setdefault("container_format", "bare")
    resp = http.post("/v2/images", json=body)
    assert resp.status_code == 201, resp.text
    assert "glance-download" in resp.headers["OpenStack-image-import-methods"].split(",")
    image_id: str = resp.json()["id"]
    return image_id


def patch(http: httpx.Client, image_id: str, **props: str) -> None:
    ops = [{"op": "add", "path": f"/{k}", "value": v} for k, v in props.items()]
    resp = http.patch(f"/v2/images/{image_id}", json=ops, headers=PATCH)
    assert resp.status_code == 200, resp.text


def source(http: httpx.Client) -> tuple[str, bytes]:
    """An active image of data, a hole and more data, with properties Glance copies or not."""
    data = os.urandom(3 * MiB) + bytes(8 * MiB) + os.urandom(MiB + 7)
    image_id = create(http, name="src")
    resp = http.put(
        f"/v2/images/{image_id}/file",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert resp.status_code == 204, resp.text
    props = {"hw_cpu_cores": "5", "trait:STORAGE_DISK_SSD": "required", "os_distro": "rhel"}
    patch(http, image_id, **props, speed="88mph")
    return image_id, data


def download(http: httpx.Client, dst: str, params: dict[str, str], **body: Any) -> httpx.Response:
    method = {"name": "glance-download", **params}
    return http.post(f"/v2/images/{dst}/import", json={"method": method, **body})


def wait_task(http: httpx.Client, image_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks = http.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        if tasks and tasks[-1]["status"] in ("success", "failure"):
            task: dict[str, Any] = tasks[-1]
            return task
        time.sleep(0.1)
    raise AssertionError(f"image {image_id}'s task did not finish")


def params(image_id: str, region: str = "central", interface: str = "public") -> dict[str, str]:
    return {
        "glance_image_id": image_id,
        "glance_region": region,
        "glance_service_interface": interface,
    }


def test_glance_download_copies_the_data_and_the_chosen_metadata(site: Site) -> None:
    with site.http() as http:
        info = http.get("/v2/info/import").json()["import-methods"]["value"]
        assert "glance-download" in info
        src, data = source(http)
        dst = create(http, name="dst", disk_format="iso", container_format="ovf")
        patch(http, dst, hw_cpu_cores="1", os_distro="windows", mine="kept")
        resp = download(http, dst, params(src), stores=["default_backend", "dcn0"])
        assert resp.status_code == 202, resp.text
        task = wait_task(http, dst)
        assert task["status"] == "success", task
        s, d = http.get(f"/v2/images/{src}").json(), http.get(f"/v2/images/{dst}").json()
        assert d["status"] == "active"
        same = ("disk_format", "container_format", "size", "virtual_size", "checksum")
        for key in (*same, "os_hash_algo", "os_hash_value"):
            assert d[key] == s[key], key
        assert (d["disk_format"], d["container_format"]) == ("raw", "bare")
        assert d["hw_cpu_cores"] == "5"
        assert d["trait:STORAGE_DISK_SSD"] == "required"
        assert d["os_distro"] == "rhel"
        assert "speed" not in d  # not one of Glance's extra_properties
        assert d["mine"] == "kept"  # the destination's own, untouched
        assert sorted(d["stores"].split(",")) == ["dcn0", "default_backend"]
        got = http.get(f"/v2/images/{dst}/file").content
        assert hashlib.sha512(got).hexdigest() == hashlib.sha512(data).hexdigest()


def test_a_non_uuid_image_id_is_refused_at_once(site: Site) -> None:
    with site.http() as http:
        dst = create(http)
        resp = download(http, dst, params("foo"))
        assert resp.status_code == 400
        assert "image id does not look like a UUID" in resp.text
        assert http.get(f"/v2/images/{dst}").json()["status"] == "queued"
        assert http.get(f"/v2/images/{dst}/tasks").json()["tasks"] == []


def test_an_unknown_region_or_interface_fails_the_task_and_leaves_the_image(site: Site) -> None:
    with site.http() as http:
        src, _ = source(http)
        for bad, why in (
            (params(src, region="not a region"), "not a region"),
            (params(src, interface="not an interface"), "not an interface"),
        ):
            dst = create(http)
            patch(http, dst, hw_cpu_cores="1", os_distro="windows")
            assert download(http, dst, bad).status_code == 202
            task = wait_task(http, dst)
            assert task["status"] == "failure"
            assert why in task["message"]
            image = http.get(f"/v2/images/{dst}").json()
            assert image["status"] == "queued"
            assert (image["hw_cpu_cores"], image["os_distro"]) == ("1", "windows")
            assert image["disk_format"] == "raw"
            assert "os_glance_import_task" not in image


def test_a_missing_or_inactive_source_fails_the_task(site: Site) -> None:
    with site.http() as http:
        queued = create(http, name="never uploaded")
        for src in (str(uuid.uuid4()), queued):
            dst = create(http)
            patch(http, dst, os_distro="windows")
            assert download(http, dst, params(src)).status_code == 202
            task = wait_task(http, dst)
            assert task["status"] == "failure"
            assert src in task["message"]
            image = http.get(f"/v2/images/{dst}").json()
            assert (image["status"], image["os_distro"]) == ("queued", "windows")
        # and a destination that is not queued is refused as web-download's is
        src, _ = source(http)
        assert download(http, src, params(queued)).status_code == 409


def test_the_regions_are_the_catalogues(tmp_path: Path) -> None:
    """Each Keystone site's region as ``ferry keystone register`` registers it; noauth: the
    site's own name."""
    raw = raw_topology(tmp_path)
    assert regions(parse(raw), "dcn0") == {"dcn0"}  # the example runs noauth
    raw["auth"] = section()  # no region anywhere: keystone-manage bootstrap's RegionOne
    raw["sites"]["dcn0"]["auth"] = section("dcn0-region")
    config = parse(raw)
    assert regions(config, "central") == {"RegionOne", "dcn0-region"}
    raw["sites"]["dcn1"]["auth"] = {"mode": "noauth"}
    assert regions(parse(raw), "dcn1") == {"dcn1", "RegionOne", "dcn0-region"}
