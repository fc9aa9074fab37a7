"""A running ferry site (``ferry serve`` in its own process) and the real clients against it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from ferry.block.embedded import EmbeddedCluster
from ferry.config import ClusterConfig
from tests.catalog.conftest import fresh_postgres
from tests.conftest import ceph_conf


@dataclass(frozen=True)
class Site:
    url: str
    config: Path
    clusters: dict[str, str]  # store id -> cluster target
    pid: int = 0  # the server process

    def glance(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        """The real python-glanceclient CLI, as an operator runs it."""
        glance = Path(sys.executable).with_name("glance")
        proc = subprocess.run(
            [str(glance), "--os-image-url", self.url, "--os-auth-token", "noauth", *args],
            capture_output=True, text=True, timeout=300,
            preexec_fn=_close_stdin,  # glanceclient reads image data from an open stdin
        )  # fmt: skip
        if ok:
            assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, headers={"X-Auth-Token": "noauth"})


def _close_stdin() -> None:
    os.close(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_site(
    tmp: Path,
    clusters: dict[str, str],
    catalog: str | None = None,
    limits: dict[str, object] | None = None,
    imports: dict[str, object] | None = None,
    extra: dict[str, object] | None = None,
) -> Iterator[Site]:
    """Write a config with stores default_backend, http, dcn0, dcn1 (and ``limits``, more
    ``imports`` settings, ``extra`` site sections), serve it."""
    port = free_port()
    stores = []
    for store_id, target in clusters.items():
        store: dict[str, object] = {
            "id": store_id,
            "description": f"{store_id} rbd glance store",
            "cluster": store_id,
        }
        if target.startswith("ceph:"):
            store["client"] = "external"
        if store_id == "default_backend":
            store["default"] = True
            store["description"] = "central rbd glance store"
        stores.append(store)
    stores.insert(1, {"id": "http", "type": "http", "description": "http store"})
    config = {
        "catalog": catalog or f"sqlite:///{tmp / 'catalog.db'}",
        "clusters": {
            sid: ClusterConfig.from_target(t).model_dump(mode="json", exclude_defaults=True)
            for sid, t in clusters.items()
        },
        "sites": {
            "central": {
                "listen": f"127.0.0.1:{port}",
                "stores": stores,
                # web-download tests fetch from a server on 127.0.0.1, and only from there
                "imports": {
                    "allow_hosts": ["127.0.0.1"],
                    "staging": str(tmp / "staging"),
                    **(imports or {}),
                },
                "limits": limits or {},
                **(extra or {}),
            }
        },
    }
    path = tmp / "ferry.yaml"
    path.write_text(yaml.safe_dump(config))
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferry", "serve", "--config", str(path), "--site", "central"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/versions", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ferry serve did not start:\n{(tmp / 'serve.log').read_text()}")
            time.sleep(0.1)
        yield Site(url, path, clusters, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(params=["embedded", "postgresql", pytest.param("ceph", marks=pytest.mark.ceph)])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    """A central site: stores on embedded clusters with a SQLite or a PostgreSQL catalogue,
    or stores on three real Ceph clusters."""
    if request.param == "ceph":
        clusters = {
            "default_backend": f"ceph:{ceph_conf('central')}",
            "dcn0": f"ceph:{ceph_conf('dcn0')}",
            "dcn1": f"ceph:{ceph_conf('dcn1')}",
        }
        yield from start_site(tmp_path, clusters)
        return
    clusters = {}
    for name in ("default_backend", "dcn0", "dcn1"):
        EmbeddedCluster.init(tmp_path / name, name)
        clusters[name] = str(tmp_path / name)
    if request.param == "postgresql":
        with fresh_postgres() as url:
            yield from start_site(tmp_path, clusters, url)
    else:
        yield from start_site(tmp_path, clusters)
