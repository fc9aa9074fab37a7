"""Authentication and project scope through a real Keystone: 401 without a valid token, and
volumes, snapshots, backups and servers that only their project sees (Cinder's and Nova's
defaults), with ferry's sites in keystone mode."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry import config as configuration
from ferry.api.server import site_options
from ferry.errors import InvalidRequest, Unauthenticated
from ferry.identity.config import KeystoneConfig
from ferry.identity.keystone import EXPIRY_MARGIN, Tokens
from tests.identity.keystone import (
    FerryUp,
    Keystone,
    free_port,
    keystone_topology,
    new_password,
    run_ferry_up,
)


@dataclass(frozen=True)
class Cloud:
    keystone: Keystone
    ferry: FerryUp
    central: str
    service_password: str
    tokens: dict[str, str]  # persona -> token: a_member, a_reader, b_member, admin

    def call(self, persona: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"X-Auth-Token": self.tokens[persona]} if persona else {}
        return httpx.request(method, f"{self.central}{path}", headers=headers, timeout=120, **kw)


@pytest.fixture(scope="module")
def cloud(keystone: Keystone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    work = tmp_path_factory.mktemp("access")
    service_password = new_password()
    keystone.service_user(service_password)
    raw = keystone_topology(work / "data", keystone, service_password, [free_port(), free_port()])
    password = new_password()
    keystone.user("access-a-member", password, "access-a", ("member",))
    keystone.user("access-a-reader", password, "access-a", ("reader",))
    keystone.user("access-b-member", password, "access-b", ("member",))
    tokens = {
        "a_member": keystone.token("access-a-member", password, "access-a"),
        "a_reader": keystone.token("access-a-reader", password, "access-a"),
        "b_member": keystone.token("access-b-member", password, "access-b"),
        "admin": keystone.token("admin", keystone.admin_password, "admin"),
    }
    with run_ferry_up(raw, work) as up:
        yield Cloud(keystone, up, up.urls["central"], service_password, tokens)


def test_no_token_or_a_bad_one_is_401_with_where_to_get_one(cloud: Cloud) -> None:
    for headers in ({}, {"X-Auth-Token": "not-a-token"}, {"X-Auth-Token": ""}):
        for path in ("/v2/images", "/v3/volumes", "/v2.1/servers", "/v2/info/stores"):
            reply = httpx.get(f"{cloud.central}{path}", headers=headers, timeout=60)
            assert reply.status_code == 401, (path, headers, reply.text)
            assert reply.headers["www-authenticate"].startswith('Keystone uri="http://127.0.0.1')
            assert reply.json()["error"]["code"] == 401
            assert reply.headers["x-openstack-request-id"].startswith("req-")
    # The version documents answer without a token, as Glance's do.
    assert httpx.get(f"{cloud.central}/versions", timeout=60).status_code == 200


def test_a_revoked_token_is_refused_once_the_cache_lets_it_go(cloud: Cloud) -> None:
    password = new_password()
    cloud.keystone.user("access-revoked", password, "access-a", ("member",))
    token = cloud.keystone.token("access-revoked", password, "access-a")
    fresh = KeystoneConfig.model_validate(
        {"auth_url": cloud.keystone.url, "username": "glance", "password": cloud.service_password,
         "cache_seconds": 0}
    )  # fmt: skip
    tokens = Tokens(fresh)
    try:
        assert tokens.context(token).project_id is not None
        cloud.keystone.admin.delete(
            f"{cloud.keystone.url}/auth/tokens", headers={"X-Subject-Token": token}
        )
        with pytest.raises(Unauthenticated):
            tokens.context(token)
    finally:
        tokens.close()


def test_the_token_cache_is_bounded_and_never_outlives_a_token(cloud: Cloud) -> None:
    cached = KeystoneConfig.model_validate(
        {"auth_url": cloud.keystone.url, "username": "glance", "password": cloud.service_password,
         "cache_seconds": 3600, "cache_size": 2}
    )  # fmt: skip
    tokens = Tokens(cached)
    try:
        for persona in ("a_member", "a_reader", "b_member"):
            ctx = tokens.context(cloud.tokens[persona])
            assert ctx.auth_token == cloud.tokens[persona]
        assert len(tokens._cache) == 2  # the least recently used one went
        ctx = tokens.context(cloud.tokens["a_reader"])
        assert ctx.roles >= {"reader"} and "member" not in ctx.roles
        # Kept at most cache_seconds, and never past the token's expiry less the margin.
        now, wall = time.monotonic(), datetime.now(UTC)
        for deadline, info in tokens._cache.values():
            assert info.expires is not None
            left = (info.expires - wall).total_seconds()
            assert deadline - now <= min(3600, left - EXPIRY_MARGIN) + 1
    finally:
        tokens.close()


def test_noauth_refuses_a_non_loopback_address_unless_allowed(tmp_path: Path) -> None:
    site = {"role": "central", "cluster": {"embedded": str(tmp_path / "c")},
            "stores": [{"id": "default_backend", "default": True}]}  # fmt: skip
    raw: dict[str, Any] = {"catalog": f"sqlite:///{tmp_path}/c.db", "sites": {"central": site}}
    config = configuration.parse(raw)
    assert site_options(config, "central", "127.0.0.1") == {}
    assert site_options(config, "central", "::1") == {}
    with pytest.raises(InvalidRequest, match="without authentication"):
        site_options(config, "central", "0.0.0.0")  # noqa: S104 - what is refused
    raw["auth"] = {"mode": "noauth", "allow_noauth_remote": True}
    assert site_options(configuration.parse(raw), "central", "0.0.0.0") == {}  # noqa: S104


def _volume(cloud: Cloud, persona: str, name: str) -> dict[str, Any]:
    reply = cloud.call(persona, "POST", "/v3/volumes", json={"volume": {"size": 1, "name": name}})
    assert reply.status_code == 202, reply.text
    return dict(reply.json()["volume"])


def test_volumes_are_their_projects_own(cloud: Cloud) -> None:
    mine = _volume(cloud, "a_member", "a-vol")
    path = f"/v3/volumes/{mine['id']}"
    assert cloud.call("a_reader", "GET", path).json()["volume"]["name"] == "a-vol"
    assert cloud.call("b_member", "GET", path).status_code == 404
    assert cloud.call("b_member", "DELETE", path).status_code == 404
    listed = {v["id"] for v in cloud.call("b_member", "GET", "/v3/volumes").json()["volumes"]}
    assert mine["id"] not in listed
    # A reader reads and never writes.
    assert cloud.call("a_reader", "DELETE", path).status_code == 403
    reply = cloud.call("a_reader", "POST", "/v3/volumes", json={"volume": {"size": 1}})
    assert reply.status_code == 403
    # Another project cannot make a volume or a snapshot from it.
    clone = {"volume": {"source_volid": mine["id"]}}
    assert cloud.call("b_member", "POST", "/v3/volumes", json=clone).status_code == 404
    snap = {"snapshot": {"volume_id": mine["id"]}}
    assert cloud.call("b_member", "POST", "/v3/snapshots", json=snap).status_code == 404
    # Admin sees every project's only when asking for all of them.
    admin_all = cloud.call("admin", "GET", "/v3/volumes", params={"all_tenants": "1"})
    assert mine["id"] in {v["id"] for v in admin_all.json()["volumes"]}
    admin_own = cloud.call("admin", "GET", "/v3/volumes").json()["volumes"]
    assert mine["id"] not in {v["id"] for v in admin_own}
    # Reset-status is the admin's way out, not the owner's.
    reset = {"os-reset_status": {"status": "error"}}
    assert cloud.call("a_member", "POST", f"{path}/action", json=reset).status_code == 403
    assert cloud.call("admin", "POST", f"{path}/action", json=reset).status_code == 202
    assert cloud.call("a_member", "DELETE", path).status_code == 202


def test_snapshots_backups_and_servers_are_their_projects_own(cloud: Cloud) -> None:
    vol = _volume(cloud, "a_member", "a-boot")
    snap = cloud.call(
        "a_member", "POST", "/v3/snapshots", json={"snapshot": {"volume_id": vol["id"]}}
    )
    assert snap.status_code == 202, snap.text
    snap_path = f"/v3/snapshots/{snap.json()['snapshot']['id']}"
    assert cloud.call("b_member", "GET", snap_path).status_code == 404
    assert cloud.call("a_reader", "GET", snap_path).status_code == 200

    backup = cloud.call(
        "a_member", "POST", "/v3/backups", json={"backup": {"volume_id": vol["id"]}}
    )
    assert backup.status_code == 202, backup.text
    backup_id = backup.json()["backup"]["id"]
    assert cloud.call("b_member", "GET", f"/v3/backups/{backup_id}").status_code == 404
    restore = cloud.call("b_member", "POST", f"/v3/backups/{backup_id}/restore", json={})
    assert restore.status_code == 404
    listed = cloud.call("b_member", "GET", "/v3/backups").json()["backups"]
    assert backup_id not in {b["id"] for b in listed}

    boot = {"server": {"name": "a-vm", "volume_id": vol["id"]}}
    assert cloud.call("b_member", "POST", "/v2.1/servers", json=boot).status_code == 404
    server = cloud.call("a_member", "POST", "/v2.1/servers", json=boot)
    assert server.status_code == 202, server.text
    server_path = f"/v2.1/servers/{server.json()['server']['id']}"
    assert cloud.call("b_member", "GET", server_path).status_code == 404
    assert cloud.call("b_member", "DELETE", server_path).status_code == 404
    stop = {"os-stop": None}
    assert cloud.call("a_reader", "POST", f"{server_path}/action", json=stop).status_code == 403
    assert cloud.call("a_member", "POST", f"{server_path}/action", json=stop).status_code == 202
    assert cloud.call("a_member", "DELETE", server_path).status_code == 204


def test_ferry_cli_logs_in_with_the_openrc_variables(cloud: Cloud) -> None:
    password = new_password()
    cloud.keystone.user("access-cli", password, "access-a", ("member",))
    base = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    openrc = base | {
        "OS_AUTH_URL": cloud.keystone.url, "OS_USERNAME": "access-cli", "OS_PASSWORD": password,
        "OS_PROJECT_NAME": "access-a", "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
    }  # fmt: skip

    def ferry(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        group, *rest = args
        return subprocess.run(
            [sys.executable, "-m", "ferry", group, "--url", cloud.central, *rest], env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    made = ferry(openrc, "volume", "create", "--size", "1", "--name", "cli-vol")
    assert made.returncode == 0, made.stderr
    listed = ferry(openrc, "volume", "list")
    assert listed.returncode == 0 and "cli-vol" in listed.stdout
    refused = ferry(base, "volume", "list")
    assert refused.returncode == 13 and "authentication" in refused.stderr.lower()
    wrong = ferry(openrc | {"OS_PASSWORD": "wrong"}, "volume", "list")
    assert wrong.returncode == 13 and "gave no token" in wrong.stderr
