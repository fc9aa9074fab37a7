"""The admin's way out: ``ferry check [--deep] [--repair]`` and os-reset_status."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from ferry.block import connect
from ferry.catalog import Catalog, ImageRecord, Location
from ferry.catalog.owners import Holder
from ferry.catalog.records import utcnow
from ferry.images.service import ImageService
from ferry.recovery.check import verify_locations
from tests.recovery.conftest import Crashable, MiB
from tests.recovery.test_crash import _image_at, _server, _volume, data


def ferry_check(sites: Crashable, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferry", "check", "--config", str(sites.topology),
         "--site", "central", *flags],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("sites", ["embedded"], indirect=True)
def test_check_finds_then_repairs_orphans_and_stuck_records(sites: Crashable) -> None:
    sites.start()
    image_id = sites.upload("central", data(12 * MiB))
    sites.stop()
    assert ferry_check(sites, "--deep").returncode == 0

    orphan = str(uuid.uuid4())
    with connect(sites.targets["central"]) as cluster:
        cluster.create("images", orphan, 4 * MiB)
    stuck = str(uuid.uuid4())
    with Catalog(sites.catalog_url) as catalog:  # an upload whose process died long ago
        dead = Holder("central@elsewhere:1:dead", "central", "elsewhere", 1, utcnow(), utcnow())
        catalog.owners.renew(dead, -timedelta(seconds=1))  # lapsed
        catalog.holder = dead.id
        catalog.create_image(ImageRecord(id=stuck))
        catalog.update_image(stuck, fields={"status": "saving"})

    found = ferry_check(sites)
    assert found.returncode == 1
    assert f"orphan central:images/{orphan}" in found.stdout
    assert f"image {stuck} (saving, held by {dead.id})" in found.stdout
    with connect(sites.targets["central"]) as cluster:
        assert orphan in cluster.list_images("images")  # a check changes nothing

    repaired = ferry_check(sites, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "removed orphan" in repaired.stdout and "back to queued" in repaired.stdout
    again = ferry_check(sites, "--deep")
    assert again.returncode == 0 and "ok" in again.stdout
    with Catalog(sites.catalog_url) as catalog:
        assert catalog.get_image(stuck).status == "queued"
        assert catalog.get_image(image_id).status == "active"


@pytest.mark.parametrize("sites", ["embedded"], indirect=True)
def test_deep_check_finds_data_that_does_not_hash(sites: Crashable) -> None:
    sites.start()
    image_id = sites.upload("central", data(12 * MiB))
    sites.stop()
    chunks = sorted(Path(sites.targets["central"]).glob("chunks/*/*"))
    assert chunks
    victim = chunks[0]
    raw = bytearray(victim.read_bytes())
    raw[100] ^= 0xFF
    victim.write_bytes(bytes(raw))
    assert ferry_check(sites).returncode == 0  # sizes only: the flip is not seen
    deep = ferry_check(sites, "--deep")
    assert deep.returncode == 1
    assert f"image {image_id} in store default_backend" in deep.stdout


def test_reset_status_is_an_admins_way_out(sites: Crashable) -> None:
    sites.start()
    image_id = _image_at(sites, "dcn0")
    volume = _volume(sites, "dcn0", image_id)
    server = _server(sites, "dcn0", image_id)
    vpath, spath = f"/v3/volumes/{volume['id']}", f"/v2.1/servers/{server['id']}"

    def reset(path: str, body: object) -> int:
        return sites.call("dcn0", "POST", f"{path}/action", json=body).status_code

    assert reset(vpath, {"os-reset_status": {"status": "error"}}) == 202
    assert sites.ok("dcn0", "GET", vpath)["volume"]["status"] == "error"
    assert reset(vpath, {"os-reset_status": {"status": "available"}}) == 202
    assert sites.ok("dcn0", "GET", vpath)["volume"]["status"] == "available"
    # Only to a final status, and in-use only with an attachment.
    assert reset(vpath, {"os-reset_status": {"status": "creating"}}) == 400
    assert reset(vpath, {"os-reset_status": {"status": "in-use"}}) == 400
    assert reset(vpath, {"os-reset_status": {}}) == 400
    assert (
        reset("/v3/volumes/" + str(uuid.uuid4()), {"os-reset_status": {"status": "error"}}) == 404
    )
    assert reset(spath, {"os-resetState": {"state": "error"}}) == 202
    assert sites.ok("dcn0", "GET", spath)["server"]["status"] == "ERROR"
    assert reset(spath, {"os-resetState": {"state": "building"}}) == 400
    assert sites.call("dcn0", "DELETE", spath).status_code == 204
    assert sites.call("dcn0", "DELETE", vpath).status_code == 202
    sites.stop()


def test_check_leaves_an_http_stores_urls_alone(tmp_path: Path) -> None:
    """An http store's data is at its URLs (several per image): no block image to check."""
    web = SimpleNamespace(config=SimpleNamespace(type="http"))
    with Catalog(f"sqlite:///{tmp_path / 'catalog.db'}") as catalog:
        catalog.migrate()
        catalog.create_image(ImageRecord(id="i-1", status="active", size=4))
        for url in ("http://a/x", "http://a/x#new"):
            catalog.add_location("i-1", Location("web", url), one_per_store=False)
        images = cast(ImageService, SimpleNamespace(catalog=catalog, stores={"web": web}))
        assert verify_locations(images, deep=True) == []
