"""The real python-glanceclient CLI and raw HTTP against a running ferry site.

Each assertion is what the real Glance 33 answered in ``shared/reference/glance-api`` for
the same step. Runs on a site whose stores are embedded clusters and on one backed by three
real Ceph clusters.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import yaml

from ferry.block import ImageSpec, connect, ops
from ferry.catalog import Catalog, Location
from tests.api.conftest import Site

# What the real Glance 33 answered (copied from shared/reference/glance-api).
REFERENCE = Path(__file__).resolve().parent / "reference"
MiB = 1 << 20


def reference(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((REFERENCE / name).read_text())
    return loaded


def table(stdout: str) -> dict[str, str]:
    """glanceclient's two-column table as a dict (wrapped values joined)."""
    rows: dict[str, str] = {}
    key = None
    for line in stdout.splitlines():
        m = re.match(r"\| (\S*)\s*\| (.*?)\s*\|$", line)
        if not m or m[1] == "Property":
            continue
        if m[1]:
            key = m[1]
            rows[key] = m[2]
        elif key:
            rows[key] += m[2]
    return rows


def image_file(tmp: Path, name: str = "cirros.raw", size: int = 24 * MiB) -> Path:
    path = tmp / name
    with open(path, "wb") as f:
        f.write(os.urandom(2 * MiB))
        f.seek(size // 2)
        f.write(os.urandom(MiB))
        f.truncate(size)
    return path


def upload(site: Site, path: Path, *extra: str) -> dict[str, str]:
    out = site.glance(
        "image-create", "--disk-format", "raw", "--container-format", "bare",
        "--name", path.stem, "--file", str(path), *extra,
    ).stdout  # fmt: skip
    return table(out)


def blocks(site: Site, store: str) -> list[str]:
    cluster = connect(site.clusters[store], client=_client(site, store))
    try:
        return cluster.list_images("images")
    finally:
        cluster.close()


def test_stores_info_is_glances(site: Site) -> None:
    with site.http() as http:
        assert http.get("/v2/info/stores").json() == reference("info-stores.json")
        methods = http.get("/v2/info/import").json()
        methods["import-methods"]["value"].remove("glance-download")  # Glance 33 ran without
        assert methods == reference("info-import.json")
        assert http.get("/v2/schemas/image").json() == reference("schemas-image.json")
        root = http.get("/")
        assert root.status_code == 300
        assert [v["id"] for v in root.json()["versions"]] == [
            v["id"]
            for v in reference("versions.json")["versions"]  # type: ignore[index]
        ]
    out = site.glance("stores-info").stdout
    assert '"id": "default_backend"' in out and '"read-only": "true"' in out


def test_upload_show_download(site: Site, tmp_path: Path) -> None:
    src = image_file(tmp_path)
    data = src.read_bytes()
    shown = upload(site, src, "--store", "default_backend")
    assert shown["status"] == "active"
    assert shown["size"] == str(len(data)) and shown["virtual_size"] == str(len(data))
    assert shown["checksum"] == hashlib.md5(data).hexdigest()  # noqa: S324 - Glance's checksum
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert shown["stores"] == "default_backend"
    image_id = shown["id"]
    assert re.fullmatch(rf"(rbd|embedded)://[0-9a-f-]+/images/{image_id}/snap", shown["direct_url"])
    # The same fields the real Glance showed after an upload, nothing missing, nothing extra.
    with site.http() as http:
        doc = http.get(f"/v2/images/{image_id}").json()
        assert set(doc) == set(reference("image-after-upload.json"))
        assert doc["locations"] == [
            {"url": shown["direct_url"], "metadata": {"store": "default_backend"}}
        ]
        ranged = http.get(f"/v2/images/{image_id}/file", headers={"Range": "bytes=0-1023"})
        assert ranged.status_code == 206
        assert ranged.headers["content-range"] == f"bytes 0-1023/{len(data)}"
        assert ranged.headers["content-md5"] == shown["checksum"]
        assert ranged.content == data[:1024]
    out = tmp_path / "downloaded.raw"
    site.glance("image-download", "--file", str(out), image_id)
    assert out.read_bytes() == data
    assert image_id in blocks(site, "default_backend")


def test_upload_without_store_goes_to_the_default(site: Site, tmp_path: Path) -> None:
    shown = upload(site, image_file(tmp_path, size=5 * MiB))
    assert shown["stores"] == "default_backend"


def test_list_filters_and_paging(site: Site, tmp_path: Path) -> None:
    ids = []
    for i in range(5):
        out = site.glance(
            "image-create", "--name", f"img-{i}", "--disk-format", "qcow2",
            "--container-format", "bare", "--property", f"batch={i % 2}",
        ).stdout  # fmt: skip
        ids.append(table(out)["id"])
    site.glance("image-tag-update", ids[3], "gold")
    listed = site.glance("image-list", "--page-size", "2", "--sort-key", "name",
                         "--sort-dir", "asc").stdout  # fmt: skip
    names = re.findall(r"\| (img-\d) ", listed)
    assert names == [f"img-{i}" for i in range(5)]  # every page followed, in order
    odd = site.glance("image-list", "--property-filter", "batch=1").stdout
    assert sorted(re.findall(r"img-\d", odd)) == ["img-1", "img-3"]
    gold = site.glance("image-list", "--tag", "gold").stdout
    assert re.findall(r"img-\d", gold) == ["img-3"]
    with site.http() as http:
        page = http.get("/v2/images", params={"limit": 2, "sort_key": "name", "sort_dir": "asc"})
        body = page.json()
        assert [i["name"] for i in body["images"]] == ["img-0", "img-1"]
        assert body["first"] == "/v2/images" and body["schema"] == "/v2/schemas/images"
        assert f"marker={body['images'][1]['id']}" in body["next"]
        last = http.get(body["next"]).json()
        assert [i["name"] for i in last["images"]] == ["img-2", "img-3"]


def test_update_and_tags(site: Site) -> None:
    image_id = table(site.glance("image-create", "--name", "before").stdout)["id"]
    shown = table(site.glance("image-update", "--name", "after", "--min-disk", "2",
                              "--property", "hw_disk_bus=scsi", image_id).stdout)  # fmt: skip
    assert (shown["name"], shown["min_disk"], shown["hw_disk_bus"]) == ("after", "2", "scsi")
    site.glance("image-tag-update", image_id, "alpha")
    site.glance("image-tag-update", image_id, "beta")
    site.glance("image-tag-delete", image_id, "alpha")
    assert table(site.glance("image-show", image_id).stdout)["tags"] == '["beta"]'
    site.glance("image-update", "--remove-property", "hw_disk_bus", image_id)
    assert "hw_disk_bus" not in table(site.glance("image-show", image_id).stdout)
    with site.http() as http:
        patch = {
            "Content-Type": "application/openstack-images-v2.1-json-patch",
            "Accept": "application/json",
        }
        ro = http.patch(f"/v2/images/{image_id}", headers=patch,
                        json=[{"op": "replace", "path": "/status", "value": "active"}])  # fmt: skip
        assert ro.status_code == 403 and "Attribute 'status' is read-only." in ro.text
        add = [{"op": "add", "path": "/os_glance_x", "value": "1"}]
        reserved = http.patch(f"/v2/images/{image_id}", headers=patch, json=add)
        assert reserved.status_code == 403 and "is reserved" in reserved.text
        wrong = http.patch(f"/v2/images/{image_id}", json=[])
        assert wrong.status_code == 415


def test_stores_delete_and_image_delete_remove_the_data(site: Site, tmp_path: Path) -> None:
    src = image_file(tmp_path, size=9 * MiB)
    image_id = upload(site, src, "--store", "default_backend")["id"]
    _also_in(site, image_id, "dcn1")  # copy-image comes later; place the copy directly
    shown = table(site.glance("image-show", image_id).stdout)
    assert shown["stores"] == "dcn1,default_backend"
    site.glance("stores-delete", "--store", "dcn1", image_id)
    assert image_id not in blocks(site, "dcn1")
    assert table(site.glance("image-show", image_id).stdout)["stores"] == "default_backend"
    again = site.glance("stores-delete", "--store", "dcn1", image_id, ok=False)
    assert again.returncode == 1
    assert "Multi Backend support is not enabled or Image/store not found." in again.stderr
    with site.http() as http:
        last = http.delete(f"/v2/stores/default_backend/{image_id}",
                           headers={"Accept": "application/json"})  # fmt: skip
        assert last.status_code == 403
        assert (
            last.json()
            == reference("exchanges/58-stores-delete-last-location.json")["exchanges"][0][
                "resp_body"
            ]["json"]
        )  # type: ignore[index]
        unknown = http.delete(f"/v2/stores/nosuchstore/{image_id}")
        assert unknown.status_code == 409
        assert "The selected store nosuchstore is not available on this node." in unknown.text
    site.glance("image-delete", image_id)
    assert image_id not in blocks(site, "default_backend")
    gone = site.glance("image-show", image_id, ok=False)
    assert f"No image found with ID {image_id}" in gone.stderr


def _client(site: Site, store: str) -> str:
    return "external" if site.clusters[store].startswith("ceph:") else "admin"


def _also_in(site: Site, image_id: str, store: str) -> None:
    """Put a copy of the image's data in another store and record its location."""
    src = connect(site.clusters["default_backend"], client=_client(site, "default_backend"))
    dst = connect(site.clusters[store], client=_client(site, store))
    with src.open(ImageSpec("images", image_id, "snap")) as image:
        ops.copy_image(image, dst, "images", image_id)
    with dst.open(ImageSpec("images", image_id)) as copy:
        copy.create_snap("snap")
        copy.protect_snap("snap")
    scheme = "rbd" if site.clusters[store].startswith("ceph:") else "embedded"
    catalog = Catalog(yaml.safe_load(site.config.read_text())["catalog"])
    url = f"{scheme}://{dst.fsid}/images/{image_id}/snap"
    catalog.add_location(image_id, Location(store, url, "active", {"store": store}))
    catalog.close()
    src.close()
    dst.close()


def test_reference_error_cases(site: Site, tmp_path: Path) -> None:
    image_id = table(site.glance("image-create", "--name", "x", "--disk-format", "raw",
                                 "--container-format", "bare").stdout)["id"]  # fmt: skip
    src = image_file(tmp_path, size=2 * MiB)
    cli = site.glance("image-upload", "--store", "nosuchstore", "--file", str(src), image_id,
                      ok=False)  # fmt: skip
    assert "Store 'nosuchstore' is not valid for this cloud." in cli.stderr
    bad = site.glance("image-create", "--disk-format", "bogus", ok=False)
    assert bad.returncode != 0 and "'bogus'" in bad.stderr
    with site.http() as http:
        put = {"Content-Type": "application/octet-stream"}
        unknown = http.put(f"/v2/images/{image_id}/file", content=b"x",
                           headers={**put, "x-image-meta-store": "nosuchstore", "Accept": "application/json"})  # fmt: skip # noqa: E501
        assert unknown.status_code == 400
        assert unknown.json()["message"].startswith("Store for identifier nosuchstore not found")
        readonly = http.put(f"/v2/images/{image_id}/file", content=b"x",
                            headers={**put, "x-image-meta-store": "http"})  # fmt: skip
        assert readonly.status_code == 410
        assert "Adding images to store is disabled." in readonly.text
        assert http.get(f"/v2/images/{image_id}").json()["status"] == "queued"
        body = {"name": "x", "disk_format": "bogus", "container_format": "bare"}
        schema_err = http.post("/v2/images", json=body)
        assert schema_err.status_code == 400
        assert "Provided object does not match schema &#x27;image&#x27;" in schema_err.text
        missing = http.get("/v2/images/bde64058-ab82-4caa-a40a-cdf723ad7312",
                           headers={"Accept": "application/json"})  # fmt: skip
        expected = reference("exchanges/53-err-json-404-image-show.json")["exchanges"][0]  # type: ignore[index]
        assert missing.status_code == 404
        assert missing.json() == expected["resp_body"]["json"]
        assert missing.headers["x-openstack-request-id"].startswith("req-")


def test_format_is_told_from_the_bytes(site: Site, tmp_path: Path) -> None:
    with site.http() as http:
        qcow2 = http.post("/v2/images", json={"name": "q", "disk_format": "qcow2",
                                              "container_format": "bare"}).json()  # fmt: skip
        raw = os.urandom(MiB)
        refused = http.put(f"/v2/images/{qcow2['id']}/file", content=raw,
                           headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert refused.status_code == 415
        assert "Image disk_format qcow2 does not match stream data raw" in refused.text
        after = http.get(f"/v2/images/{qcow2['id']}").json()
        assert after["status"] == "queued" and after["locations"] == [] and "stores" not in after
        assert qcow2["id"] not in blocks(site, "default_backend")  # nothing left behind
        header = b"QFI\xfb" + bytes(20) + (64 * MiB).to_bytes(8, "big")
        as_raw = http.post("/v2/images", json={"name": "r", "disk_format": "raw",
                                               "container_format": "bare"}).json()  # fmt: skip
        ok = http.put(f"/v2/images/{as_raw['id']}/file", content=header + bytes(MiB),
                      headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert ok.status_code == 204
        assert http.get(f"/v2/images/{as_raw['id']}").json()["status"] == "active"


def test_size_header_that_disagrees_is_refused(site: Site) -> None:
    with site.http() as http:
        image = http.post("/v2/images", json={"name": "s", "disk_format": "raw",
                                              "container_format": "bare"}).json()  # fmt: skip
        r = http.put(f"/v2/images/{image['id']}/file", content=os.urandom(MiB),
                     headers={"Content-Type": "application/octet-stream",
                              "x-openstack-image-size": str(2 * MiB)})  # fmt: skip
        assert r.status_code == 400
        after = http.get(f"/v2/images/{image['id']}").json()
        assert after["status"] == "queued" and after["size"] is None
        assert image["id"] not in blocks(site, "default_backend")


def test_deactivated_and_protected_images(site: Site, tmp_path: Path) -> None:
    image_id = upload(site, image_file(tmp_path, size=4 * MiB))["id"]
    site.glance("image-deactivate", image_id)
    assert table(site.glance("image-show", image_id).stdout)["status"] == "deactivated"
    with site.http() as http:
        r = http.get(f"/v2/images/{image_id}/file", headers={"Accept": "application/json"})
        assert r.status_code == 403
        assert "has been deactivated. Image data download is forbidden" in r.json()["message"]
    site.glance("image-reactivate", image_id)
    got = tmp_path / "got"
    site.glance("image-download", "--file", str(got), image_id)
    assert got.stat().st_size == 4 * MiB
    site.glance("image-update", "--protected", "True", image_id)
    refused = site.glance("image-delete", image_id, ok=False)  # glanceclient's words for 403
    assert refused.returncode != 0 and "not permitted to delete the image" in refused.stderr
    with site.http() as http:
        r = http.delete(f"/v2/images/{image_id}", headers={"Accept": "application/json"})
        assert r.status_code == 403 and "is protected and cannot be deleted" in r.text
    assert image_id in blocks(site, "default_backend")  # nothing was removed
    site.glance("image-update", "--protected", "False", image_id)
    site.glance("image-delete", image_id)
    assert image_id not in blocks(site, "default_backend")
