"""A real Keystone for tests (started by scripts/keystone-dev), and what tests do with it.

``Keystone`` makes projects, users with roles, the service user ferry validates tokens as,
services and endpoints per region, and tokens, over keystoneauth1 as the bootstrap admin.
``keystone_topology`` writes ferry's guide topology (central with stores default_backend, dcn0,
dcn1 on embedded clusters, and the edges) with ``auth: mode: keystone``; ``run_ferry_up`` runs
it; ``serve_directory`` is a fixture HTTP server for web-download and http locations.

scripts/test starts one Keystone for the whole run and exports FERRY_TEST_KEYSTONE_URL and
FERRY_TEST_KEYSTONE_ADMIN_PASSWORD; without them ``keystone_for_tests`` starts its own (with its
own PostgreSQL) when .venv-keystone exists, and otherwise skips, or fails under
FERRY_REQUIRE_KEYSTONE=1.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from ferry import topology

ROOT = Path(__file__).resolve().parents[2]
KEYSTONE_DEV = ROOT / "scripts" / "keystone-dev"
KEYSTONE_VENV = Path(os.environ.get("KEYSTONE_DEV_VENV", ROOT / ".venv-keystone"))
SKIP_REASON = (
    "no Keystone: scripts/test starts one (FERRY_TEST_KEYSTONE_URL unset), or run "
    "'scripts/keystone-dev install' and the tests start their own"
)
INTERFACES = ("public", "internal", "admin")


def require(reason: str) -> None:
    """Skip with ``reason``; under FERRY_REQUIRE_KEYSTONE=1 (CI) fail instead."""
    if os.environ.get("FERRY_REQUIRE_KEYSTONE"):
        pytest.fail(f"FERRY_REQUIRE_KEYSTONE is set but {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class Keystone:
    """A Keystone v3 and its bootstrap admin (user admin, project admin, role admin)."""

    url: str  # http://127.0.0.1:PORT/v3
    admin_password: str

    @functools.cached_property
    def admin(self) -> ks_session.Session:
        return self.session("admin", self.admin_password, "admin")

    def session(self, username: str, password: str, project: str) -> ks_session.Session:
        plugin = v3.Password(
            auth_url=self.url,
            username=username,
            password=password,
            project_name=project,
            user_domain_id="default",
            project_domain_id="default",
        )
        return ks_session.Session(auth=plugin, timeout=60)

    def token(self, username: str, password: str, project: str) -> str:
        """A project-scoped token, as a client gets one with password auth."""
        token = self.session(username, password, project).get_token()
        assert token
        return str(token)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        reply = self.admin.request(f"{self.url}{path}", method, raise_exc=False, **kwargs)
        assert reply.status_code < 300, f"{method} {path}: {reply.status_code} {reply.text}"
        return dict(reply.json()) if reply.content else {}

    def _find(self, kind: str, **filters: str) -> dict[str, Any] | None:
        found = self._call("GET", f"/{kind}", params=filters)[kind]
        return dict(found[0]) if found else None

    def project(self, name: str) -> str:
        """The id of project ``name`` in the default domain, made if missing."""
        found = self._find("projects", name=name, domain_id="default")
        if found:
            return str(found["id"])
        body = {"project": {"name": name, "domain_id": "default", "enabled": True}}
        return str(self._call("POST", "/projects", json=body)["project"]["id"])

    def role(self, name: str) -> str:
        found = self._find("roles", name=name)
        if found:
            return str(found["id"])
        return str(self._call("POST", "/roles", json={"role": {"name": name}})["role"]["id"])

    def user(self, name: str, password: str, project: str, roles: tuple[str, ...]) -> str:
        """User ``name`` (made, or its password reset) with ``roles`` on ``project``."""
        found = self._find("users", name=name, domain_id="default")
        body = {"user": {"name": name, "password": password, "domain_id": "default"}}
        if found:
            user_id = str(found["id"])
            self._call("PATCH", f"/users/{user_id}", json={"user": {"password": password}})
        else:
            user_id = str(self._call("POST", "/users", json=body)["user"]["id"])
        project_id = self.project(project)
        for role in roles:
            self._call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{self.role(role)}")
        return user_id

    def service_user(self, password: str, name: str = "glance") -> str:
        """The user a service validates tokens as: admin and service on project service."""
        return self.user(name, password, "service", ("admin", "service"))

    def region(self, region: str) -> None:
        reply = self.admin.get(f"{self.url}/regions/{region}", raise_exc=False)
        if reply.status_code == 404:
            self._call("POST", "/regions", json={"region": {"id": region}})

    def register(self, service_type: str, name: str, urls: dict[str, str]) -> str:
        """Service ``name`` of ``service_type`` with public, internal and admin endpoints at
        ``urls[region]`` in each region (replacing the service's earlier ones there)."""
        found = self._find("services", type=service_type)
        if found:
            service_id = str(found["id"])
        else:
            body = {"service": {"type": service_type, "name": name, "enabled": True}}
            service_id = str(self._call("POST", "/services", json=body)["service"]["id"])
        old = self._call("GET", "/endpoints", params={"service_id": service_id})["endpoints"]
        for region, url in urls.items():
            self.region(region)
            for endpoint in old:
                if endpoint["region_id"] == region:
                    self._call("DELETE", f"/endpoints/{endpoint['id']}")
            for interface in INTERFACES:
                endpoint = {
                    "service_id": service_id,
                    "interface": interface,
                    "region_id": region,
                    "url": url,
                    "enabled": True,
                }
                self._call("POST", "/endpoints", json={"endpoint": endpoint})
        return service_id

    def auth_section(self, password: str, region: str, username: str = "glance") -> dict[str, Any]:
        """ferry's ``auth:`` for a site that validates tokens as ``username``."""
        return {
            "mode": "keystone",
            "keystone": {
                "auth_url": self.url,
                "username": username,
                "password": password,
                "project_name": "service",
                "region": region,
            },
        }

    def clouds_yaml(self, path: Path, clouds: dict[str, tuple[str, str, str, str]]) -> Path:
        """clouds.yaml for openstackclient and openstacksdk: name -> (user, password, project,
        region), password auth through this Keystone's catalogue. Written 0600."""
        doc = {
            "clouds": {
                name: {
                    "auth": {
                        "auth_url": self.url,
                        "username": user,
                        "password": password,
                        "project_name": project,
                        "user_domain_name": "Default",
                        "project_domain_name": "Default",
                    },
                    "region_name": region,
                    "identity_api_version": 3,
                    "image_api_version": 2,
                }
                for name, (user, password, project, region) in clouds.items()
            }
        }
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(doc))
        return path


class _Started:
    """The Keystone this process started, shared by every session fixture that asks for one
    (tests/identity's and tests/tempest's): started by the first, purged after the last."""

    keystone: Keystone | None = None
    state: Path | None = None
    users = 0


def keystone_for_tests() -> Iterator[Keystone]:
    """The run's Keystone (scripts/test's), or one started here for this session."""
    url = os.environ.get("FERRY_TEST_KEYSTONE_URL")
    if url:
        yield Keystone(url, os.environ["FERRY_TEST_KEYSTONE_ADMIN_PASSWORD"])
        return
    if _Started.keystone is None:
        _Started.keystone, _Started.state = _start_keystone()
    _Started.users += 1
    try:
        yield _Started.keystone
    finally:
        _Started.users -= 1
        if _Started.users == 0 and _Started.state is not None:
            subprocess.run([str(KEYSTONE_DEV), "purge", str(_Started.state / "keystone")],
                           timeout=120)  # fmt: skip
            shutil.rmtree(_Started.state, ignore_errors=True)
            _Started.keystone = _Started.state = None


def _start_keystone() -> tuple[Keystone, Path]:
    if not (KEYSTONE_VENV / "bin" / "keystone-manage").exists():
        require(SKIP_REASON)
    # Under /var/tmp: as root, keystone-dev's own PostgreSQL runs as the postgres OS user, which
    # must reach its directory (pytest's /tmp/pytest-of-root is 0700).
    state = Path(tempfile.mkdtemp(prefix="ferry-keystone.", dir="/var/tmp"))
    state.chmod(0o755)
    args = [str(KEYSTONE_DEV), "start", str(state / "keystone"), str(free_port_pair())]
    if os.environ.get("FERRY_TEST_POSTGRES_URL"):
        args.append(os.environ["FERRY_TEST_POSTGRES_URL"])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        subprocess.run([str(KEYSTONE_DEV), "purge", str(state / "keystone")], timeout=120)
        shutil.rmtree(state, ignore_errors=True)
        require(f"scripts/keystone-dev start failed:\n{proc.stderr[-3000:]}")
    out = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    return Keystone(out["url"], out["admin_password"]), state


def free_port_pair() -> int:
    """A port P with P+1 free too (keystone-dev's own PostgreSQL listens on P+1)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and port_is_free(port + 1):
            return port
    raise RuntimeError("no two consecutive free ports")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def keystone_topology(
    data: Path, keystone: Keystone, service_password: str, ports: list[int]
) -> dict[str, Any]:
    """The guide's topology (central + one edge per further port) on embedded clusters under
    ``data``, every site validating tokens with ``keystone``: central in region RegionOne, each
    edge in a region named after it."""
    raw = topology.example(data, edges=len(ports) - 1, ports=ports)
    for name, site in raw["sites"].items():
        region = "RegionOne" if name == "central" else name
        site["auth"] = keystone.auth_section(service_password, region)
    return raw


def site_regions(raw: dict[str, Any]) -> dict[str, str]:
    """Region -> Image API URL, as keystone_topology placed the sites."""
    return {
        site["auth"]["keystone"]["region"]: f"http://{site['listen']}"
        for site in raw["sites"].values()
    }


@dataclass
class FerryUp:
    """``ferry up`` running a topology: every site's URL, and the process."""

    urls: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def run_ferry_up(raw: dict[str, Any], workdir: Path) -> Iterator[FerryUp]:
    """Write ``raw`` as a topology in ``workdir`` (0600: it holds passwords and keys) and run
    ``ferry up`` on it until the block ends."""
    path = workdir / "topology.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    log = workdir / "up.log"
    urls = {name: f"http://{site['listen']}" for name, site in raw["sites"].items()}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ferry", "up", "--topology", str(path)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        pending = set(urls.values())
        while pending:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ferry up did not start:\n{log.read_text()[-5000:]}")
            for url in list(pending):
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/versions", timeout=2).status_code in (200, 300):
                        pending.discard(url)
            time.sleep(0.2)
        yield FerryUp(urls, proc, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 serving ``directory``; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def make_fixture_images(directory: Path) -> dict[str, Path]:
    """What Tempest's http_qcow2_image and http_image name: a real (empty, 1 MiB) qcow2 made
    by qemu-img, and a small tar.gz."""
    directory.mkdir(parents=True, exist_ok=True)
    qcow2 = directory / "image.qcow2"
    if shutil.which("qemu-img") is None:
        require("qemu-img is not installed (scripts/test installs qemu-utils)")
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "1M"], check=True, timeout=60
    )
    payload = directory / "payload.bin"
    payload.write_bytes(secrets.token_bytes(64 * 1024))
    tgz = directory / "image.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(payload, arcname="payload.bin")
    payload.unlink()
    return {"qcow2": qcow2, "tgz": tgz}


def new_password() -> str:
    return secrets.token_urlsafe(18)
