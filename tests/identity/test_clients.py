"""The real clients through a real Keystone's catalogue, with password auth, against ferry's
central (region RegionOne) and an edge (region dcn0): python-glanceclient with OS_* variables,
openstackclient and openstacksdk with --os-cloud / clouds.yaml."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openstack
import pytest

from tests.identity.keystone import (
    KEYSTONE_VENV,
    FerryUp,
    Keystone,
    free_port,
    keystone_topology,
    new_password,
    require,
    run_ferry_up,
    site_regions,
)

MiB = 1 << 20
PROJECT = "ferry-clients"
# openstacksdk warns about its own deprecated internals on every connection and upload.
pytestmark = [
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
]


@dataclass(frozen=True)
class Deployment:
    keystone: Keystone
    ferry: FerryUp
    user: str
    password: str
    clouds: Path  # clouds.yaml: clouds "central" and "dcn0", the same member user

    def env(self, region: str | None) -> dict[str, str]:
        """OS_* variables as an openrc sets them, for ``region``; with None, only the
        clouds.yaml (``--os-cloud`` then says the rest)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env["OS_CLIENT_CONFIG_FILE"] = str(self.clouds)
        if region is None:
            return env
        return env | {
            "OS_AUTH_URL": self.keystone.url,
            "OS_USERNAME": self.user,
            "OS_PASSWORD": self.password,
            "OS_PROJECT_NAME": PROJECT,
            "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default",
            "OS_REGION_NAME": region,
            "OS_IDENTITY_API_VERSION": "3",
            "OS_IMAGE_API_VERSION": "2",
        }

    def run(self, tool: Path, *args: str, region: str | None = "RegionOne") -> str:
        proc = subprocess.run(
            [str(tool), *args], env=self.env(region), capture_output=True, text=True,
            timeout=300, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.returncode == 0, f"{tool.name} {args}:\n{proc.stderr[-3000:]}"
        return proc.stdout


@pytest.fixture(scope="module")
def deployment(
    keystone: Keystone, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    work = tmp_path_factory.mktemp("clients")
    service_password = new_password()
    keystone.service_user(service_password)
    raw = keystone_topology(work / "data", keystone, service_password, [free_port(), free_port()])
    keystone.register("image", "glance", site_regions(raw))
    user, password = "ferry-clients-member", new_password()
    keystone.user(user, password, PROJECT, ("member",))
    clouds = keystone.clouds_yaml(
        work / "clouds.yaml",
        {region: (user, password, PROJECT, region) for region in ("RegionOne", "dcn0")},
    )
    with run_ferry_up(raw, work) as ferry:
        yield Deployment(keystone, ferry, user, password, clouds)


def image_file(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_bytes(os.urandom(MiB) + bytes(MiB))
    return path


@pytest.mark.parametrize("region", ["RegionOne", "dcn0"])
def test_glanceclient_with_os_variables(
    deployment: Deployment, tmp_path: Path, region: str
) -> None:
    glance = Path(sys.executable).with_name("glance")
    src = image_file(tmp_path, "glance.raw")
    out = deployment.run(
        glance, "image-create", "--name", f"glance-{region}", "--disk-format", "raw",
        "--container-format", "bare", "--file", str(src), region=region,
    )  # fmt: skip
    image_id = next(ln.split("|")[2].strip() for ln in out.splitlines() if "| id " in ln)
    assert image_id in deployment.run(glance, "image-list", region=region)
    shown = deployment.run(glance, "image-show", image_id, region=region)
    assert hashlib.md5(src.read_bytes()).hexdigest() in shown  # noqa: S324 - Glance's checksum
    assert "default_backend" in deployment.run(glance, "stores-info", region="RegionOne")
    deployment.run(glance, "image-delete", image_id, region=region)


@pytest.mark.parametrize("cloud", ["RegionOne", "dcn0"])
def test_openstackclient_with_os_cloud(deployment: Deployment, tmp_path: Path, cloud: str) -> None:
    tool = KEYSTONE_VENV / "bin" / "openstack"
    if not tool.exists():
        require("openstackclient is not installed (scripts/keystone-dev install)")

    def osc(*args: str) -> Any:
        out = deployment.run(tool, "--os-cloud", cloud, "image", *args, region=None)
        return json.loads(out) if out.strip() else None

    src = image_file(tmp_path, "osc.raw")
    fmt = ("--disk-format", "raw", "--container-format", "bare")
    created = osc("create", f"osc-{cloud}", *fmt, "--file", str(src), "-f", "json")
    assert created["id"] in {image["ID"] for image in osc("list", "-f", "json")}
    shown = osc("show", created["id"], "-f", "json")
    assert shown["status"] == "active"
    assert shown["checksum"] == hashlib.md5(src.read_bytes()).hexdigest()  # noqa: S324
    osc("delete", created["id"])


@pytest.mark.parametrize("cloud", ["RegionOne", "dcn0"])
def test_openstacksdk_with_clouds_yaml(deployment: Deployment, cloud: str) -> None:
    config = openstack.config.OpenStackConfig(config_files=[str(deployment.clouds)])
    conn = openstack.connection.Connection(config=config.get_one(cloud=cloud))
    try:
        site = "central" if cloud == "RegionOne" else cloud
        endpoint = str(conn.image.get_endpoint()).rstrip("/").removesuffix("/v2")
        assert endpoint == deployment.ferry.urls[site]  # the catalogue's, for the cloud's region
        data = os.urandom(MiB) + bytes(MiB)
        image = conn.image.create_image(
            name=f"sdk-{cloud}", data=data, disk_format="raw", container_format="bare",
            allow_duplicates=True, validate_checksum=False,
        )  # fmt: skip
        assert conn.image.get_image(image.id).status == "active"
        assert conn.image.download_image(image.id).content == data
        conn.image.delete_image(image.id)
    finally:
        conn.close()
