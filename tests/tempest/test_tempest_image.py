"""Tempest's tempest.api.image.v2 tests against ferry's central behind a real Keystone.

Central has Glance's three rbd stores (default_backend, the default, and dcn0 and dcn1, on
embedded clusters), validates tokens with Keystone and is the image endpoint of RegionOne in
its catalogue; web-download may fetch from a fixture server on 127.0.0.1 that serves a real
qcow2 and a small tar.gz (Tempest's http_qcow2_image and http_image). The base run has Glance's
base feature set; the extended run adds an http store named ``web`` and turns on in tempest.conf
what ferry does beyond the base set. Targets are the real Glance 33's results in the same setup
(shared/reference/keystone-tempest.md): 56 passed, 0 failed (base); 73 passed, 0 failed
(extended).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.identity.keystone import (
    Keystone,
    free_port,
    keystone_topology,
    make_fixture_images,
    new_password,
    require,
    run_ferry_up,
    serve_directory,
)
from tests.tempest import tempest

pytestmark = [pytest.mark.tempest, pytest.mark.slow]

REGEX = r"^tempest\.api\.image\.v2"
MIN_PASSED = {"base": 56, "extended": 73}


@pytest.fixture(scope="module")
def http_images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """URLs of the fixture server's qcow2 and tar.gz."""
    directory = tmp_path_factory.mktemp("http-images")
    files = make_fixture_images(directory)
    with serve_directory(directory) as url:
        yield {kind: f"{url}/{path.name}" for kind, path in files.items()}


def central_topology(
    data: Path, keystone: Keystone, service_password: str, *, extended: bool
) -> dict[str, Any]:
    """The guide's central alone (its stores default_backend, dcn0 and dcn1 on the three
    embedded clusters), in keystone mode; with ``extended``, also the http store ``web`` and
    locations by JSON patch."""
    raw = keystone_topology(data, keystone, service_password, [free_port() for _ in range(3)])
    raw["sites"] = {"central": raw["sites"]["central"]}
    if extended:
        central = raw["sites"]["central"]
        central["stores"].append({"id": "web", "type": "http", "description": "http store"})
        central["imports"]["manage_locations"] = True  # Glance's show_multiple_locations
    return raw


@pytest.mark.parametrize("mode", ["base", "extended"])
def test_tempest_image_v2(
    mode: str, keystone: Keystone, http_images: dict[str, str], tmp_path: Path
) -> None:
    if not tempest.installed():
        require("Tempest is not installed (scripts/tempest-dev install)")
    service_password = new_password()
    keystone.service_user(service_password)
    raw = central_topology(tmp_path / "data", keystone, service_password, extended=mode != "base")
    central = f"http://{raw['sites']['central']['listen']}"
    keystone.register("image", "glance", {"RegionOne": central})
    workspace = tmp_path / "tempest"
    conf = tempest.init(workspace)
    tempest.write_conf(
        conf,
        keystone_url=keystone.url,
        admin_password=keystone.admin_password,
        http_image=http_images["tgz"],
        http_qcow2_image=http_images["qcow2"],
        extended=mode != "base",
        lock_path=workspace / "lock",
        log_file=workspace / "tempest.log",
    )
    with run_ferry_up(raw, tmp_path):
        results = tempest.run(workspace, REGEX)
    report = results.report()
    (tmp_path / "report.txt").write_text(report)
    if os.environ.get("FERRY_TEMPEST_REPORT_DIR"):  # copies that outlive pytest's tmp dirs
        out = Path(os.environ["FERRY_TEMPEST_REPORT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        (out / f"tempest-{mode}.txt").write_text(report)
        shutil.copy(workspace / "tempest-run.log", out / f"tempest-{mode}-run.log")
        shutil.copy(workspace / "tempest.log", out / f"tempest-{mode}-tempest.log")
        shutil.copy(tmp_path / "up.log", out / f"tempest-{mode}-ferry.log")
    print(report)
    if results.failed or len(results.passed) < MIN_PASSED[mode]:
        pytest.fail(f"{mode}: want 0 failed and >= {MIN_PASSED[mode]} passed\n{report}")
