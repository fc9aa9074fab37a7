"""``ferry keystone register`` against a real Keystone: what it makes, that a second run makes
nothing, and that the real clients then find central and an edge through the catalogue alone
(password auth, one region per site) and reach a keystone-mode ``ferry up``.

The sites are in regions of their own and validate tokens as a service user of their own in a
project of its own, all named afresh for each run (the run's Keystone may have served others),
so nothing here touches what other tests register and the first run finds none of it."""

from __future__ import annotations

import copy
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import glanceclient
import openstack
import pytest
import yaml
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from ferry import topology
from tests.identity.keystone import (
    FerryUp,
    Keystone,
    free_port,
    new_password,
    run_ferry_up,
)

MiB = 1 << 20
RUN = secrets.token_hex(3)
SERVICE_USER = f"ferry-register-{RUN}"
SERVICE_PROJECT = f"ferry-register-service-{RUN}"
PROJECT = f"ferry-register-users-{RUN}"
REGIONS = {"central": f"register-central-{RUN}", "dcn0": f"register-dcn0-{RUN}"}
INTERFACES = ("public", "internal", "admin")
pytestmark = [
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
]


@dataclass
class Registered:
    keystone: Keystone
    raw: dict[str, Any]  # the topology
    path: Path
    env: dict[str, str]  # the admin's openrc
    runs: list[str]  # what the two runs printed
    user: str
    password: str

    def site_url(self, site: str) -> str:
        return f"http://{self.raw['sites'][site]['listen']}"

    def member(self, region: str) -> ks_session.Session:
        plugin = v3.Password(
            auth_url=self.keystone.url, username=self.user, password=self.password,
            project_name=PROJECT, user_domain_name="Default", project_domain_name="Default",
        )  # fmt: skip
        return ks_session.Session(auth=plugin, timeout=60)


def register(path: Path, env: dict[str, str], *args: str) -> str:
    """``ferry keystone register`` as an operator runs it; its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "ferry", "keystone", "register", "--config", str(path), *args],
        env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def openrc(keystone: Keystone) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    return env | {
        "OS_AUTH_URL": keystone.url,
        "OS_USERNAME": "admin",
        "OS_PASSWORD": keystone.admin_password,
        "OS_PROJECT_NAME": "admin",
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_REGION_NAME": "RegionOne",
        "OS_IDENTITY_API_VERSION": "3",
    }


def write(raw: dict[str, Any], path: Path) -> Path:
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def registered(keystone: Keystone, tmp_path_factory: pytest.TempPathFactory) -> Registered:
    work = tmp_path_factory.mktemp("register")
    raw = topology.example(work / "data", edges=1, ports=[free_port(), free_port()])
    section = keystone.auth_section(new_password(), REGIONS["central"], SERVICE_USER)
    section["keystone"]["project_name"] = SERVICE_PROJECT
    raw["auth"] = section  # central has the deployment's; dcn0 its own region
    raw["sites"]["dcn0"]["auth"] = copy.deepcopy(section)
    raw["sites"]["dcn0"]["auth"]["keystone"]["region"] = REGIONS["dcn0"]
    path = write(raw, work / "topology.yaml")
    env = openrc(keystone)
    # the first run as an openrc gives it; the second with --os-cloud from a clouds.yaml
    first = register(path, env)
    clouds = keystone.clouds_yaml(
        work / "clouds.yaml", {"admin": ("admin", keystone.admin_password, "admin", "RegionOne")}
    )
    cloud_env = {k: v for k, v in env.items() if not k.startswith("OS_")}
    cloud_env["OS_CLIENT_CONFIG_FILE"] = str(clouds)
    second = register(path, cloud_env, "--os-cloud", "admin")
    user, password = "ferry-register-member", new_password()
    keystone.user(user, password, PROJECT, ("member",))
    return Registered(keystone, raw, path, env, [first, second], user, password)


@pytest.fixture(scope="module")
def ferry(registered: Registered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryUp]:
    with run_ferry_up(registered.raw, tmp_path_factory.mktemp("register-up")) as up:
        yield up


def rows(output: str) -> list[list[str]]:
    """The report's table rows: kind, name, region, detail, action."""
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in output.splitlines()]
    return [row for row in cells if len(row) == 5 and row[0] != "kind"]


def test_the_first_run_makes_everything_and_the_second_nothing(registered: Registered) -> None:
    first, second = (rows(run) for run in registered.runs)
    made = {(kind, name, region) for kind, name, region, _, action in first if action == "created"}
    assert {
        ("region", REGIONS["central"], ""),
        ("region", REGIONS["dcn0"], ""),
        ("project", SERVICE_PROJECT, ""),
        ("user", SERVICE_USER, ""),
        ("role assignment", f"{SERVICE_USER} admin", ""),
        ("role assignment", f"{SERVICE_USER} service", ""),
    } <= made  # fmt: skip
    for service in ("image", "volumev3", "block-storage"):
        for region in REGIONS.values():
            for interface in INTERFACES:
                assert ("endpoint", f"{service} {interface}", region) in made
    assert len(second) == len(first)
    assert {row[4] for row in second} == {"unchanged"}
    assert "nothing changed: Keystone already holds all of it" in registered.runs[1]
    assert "cloud admin (" in registered.runs[1]


def test_each_site_is_in_the_catalogue_in_its_region(registered: Registered) -> None:
    session = registered.member("RegionOne")
    for site, region in REGIONS.items():
        url = registered.site_url(site)
        for interface in INTERFACES:
            found = {
                kind: session.get_endpoint(
                    service_type=kind,
                    region_name=region,
                    interface=interface,
                    skip_discovery=True,
                )
                for kind in ("image", "volumev3", "block-storage")
            }
            assert found == {"image": url, "volumev3": f"{url}/v3", "block-storage": f"{url}/v3"}


def test_the_service_user_validates_tokens_with_admin_and_service(registered: Registered) -> None:
    password = registered.raw["auth"]["keystone"]["password"]
    session = registered.keystone.session(SERVICE_USER, password, SERVICE_PROJECT)
    assert session.auth is not None
    assert {"admin", "service"} <= set(session.auth.get_access(session).role_names)


@pytest.mark.parametrize("site", ["central", "dcn0"])
def test_openstacksdk_reaches_the_sites_image_api_through_the_catalogue(
    registered: Registered, ferry: FerryUp, site: str
) -> None:
    conn = connect(registered, REGIONS[site])
    try:
        assert conn.image.get_endpoint().rstrip("/").removesuffix("/v2") == ferry.urls[site]
        data = os.urandom(MiB) + bytes(MiB)
        image = conn.image.create_image(
            name=f"register-{site}", data=data, disk_format="raw", container_format="bare",
            allow_duplicates=True, validate_checksum=False,
        )  # fmt: skip
        assert conn.image.get_image(image.id).status == "active"
        assert conn.image.download_image(image).content == data
        conn.image.delete_image(image)
    finally:
        conn.close()


@pytest.mark.parametrize("site", ["central", "dcn0"])
def test_glanceclient_reaches_the_sites_stores_through_the_catalogue(
    registered: Registered, ferry: FerryUp, site: str
) -> None:
    session = registered.member(REGIONS[site])
    glance = glanceclient.Client("2", session=session, region_name=REGIONS[site])
    stores = {store["id"] for store in glance.images.get_stores_info()["stores"]}
    assert stores == {"central": {"default_backend", "dcn0"}, "dcn0": {"dcn0", "central"}}[site]


@pytest.mark.parametrize("site", ["central", "dcn0"])
def test_openstacksdk_block_storage_makes_a_volume_in_the_sites_zone(
    registered: Registered, ferry: FerryUp, site: str
) -> None:
    conn = connect(registered, REGIONS[site])
    try:
        assert conn.block_storage.get_endpoint() == f"{ferry.urls[site]}/v3"
        volume = conn.block_storage.create_volume(size=1, name=f"register-{site}")
        assert (volume.status, volume.availability_zone) == ("available", site)
        assert conn.block_storage.get_volume(volume.id).name == f"register-{site}"
        assert volume.id in {v.id for v in conn.block_storage.volumes(details=False)}
        conn.block_storage.delete_volume(volume)
    finally:
        conn.close()


@pytest.mark.xfail(reason="ferry serves no /v3/volumes/detail, openstacksdk's default listing")
def test_openstacksdk_lists_volumes_in_detail(registered: Registered, ferry: FerryUp) -> None:
    conn = connect(registered, REGIONS["central"])
    try:
        list(conn.block_storage.volumes())
    finally:
        conn.close()


def connect(registered: Registered, region: str) -> openstack.connection.Connection:
    return openstack.connect(
        auth_url=registered.keystone.url, username=registered.user,
        password=registered.password, project_name=PROJECT, user_domain_name="Default",
        project_domain_name="Default", region_name=region,
    )  # fmt: skip


def test_a_moved_site_gets_its_endpoints_updated(registered: Registered, tmp_path: Path) -> None:
    """Runs last: it moves dcn0 away and back."""
    moved = copy.deepcopy(registered.raw)
    moved["sites"]["dcn0"]["public_url"] = "https://dcn0.example.com:13292"
    report = rows(register(write(moved, tmp_path / "moved.yaml"), registered.env, "--site", "dcn0"))
    updated = {(row[1], row[3]) for row in report if row[4] == "updated"}
    assert updated == {
        (f"{service} {interface}", f"https://dcn0.example.com:13292{suffix}")
        for service, suffix in (("image", ""), ("volumev3", "/v3"), ("block-storage", "/v3"))
        for interface in INTERFACES
    }
    assert all(row[2] != REGIONS["central"] for row in report)  # --site dcn0 only
    back = rows(register(registered.path, registered.env, "--site", "dcn0"))
    assert sum(row[4] == "updated" for row in back) == 9
