"""Three sites from one topology (`ferry up`): central, dcn0 and dcn1, each with its own cluster
and Image API, one shared catalogue. Driven by the real glanceclient CLI; the clusters are
embedded directories or three real Ceph clusters.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ferry import topology
from ferry.block import connect
from ferry.block.auth import read_keyring
from ferry.client import ImageClient
from ferry.config import parse
from tests.api.conftest import free_port
from tests.conftest import ceph_conf

MiB = 1 << 20
SITES = ("central", "dcn0", "dcn1")
# What each site calls each cluster's store in the guide's topology.
STORE_AT = {
    "central": {"central": "default_backend", "dcn0": "dcn0", "dcn1": "dcn1"},
    "dcn0": {"central": "central", "dcn0": "dcn0"},
    "dcn1": {"central": "central", "dcn1": "dcn1"},
}


@dataclass
class Deployment:
    urls: dict[str, str]
    targets: dict[str, str]  # cluster -> what ferry.block.connect takes
    process: subprocess.Popen[bytes]
    log: Path

    def glance(self, site: str, *args: str) -> str:
        glance = Path(sys.executable).with_name("glance")
        proc = subprocess.run(
            [str(glance), "--os-image-url", self.urls[site], "--os-auth-token", "noauth", *args],
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    def image(self, site: str, image_id: str) -> dict[str, Any]:
        reply = httpx.get(f"{self.urls[site]}/v2/images/{image_id}", timeout=30)
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def stores(self, site: str, image_id: str) -> set[str]:
        return set(filter(None, self.image(site, image_id).get("stores", "").split(",")))

    def read_bytes(self, site: str) -> dict[str, int]:
        """Bytes site's process has read from each cluster, from its /metrics."""
        with ImageClient(self.urls[site]) as client:
            return client.traffic()["read"]

    def upload(self, site: str, path: Path, name: str) -> str:
        out = self.glance(site, "image-create", "--name", name, "--disk-format", "raw",
                          "--container-format", "bare", "--file", str(path))  # fmt: skip
        return next(ln.split("|")[2].strip() for ln in out.splitlines() if "| id " in ln)

    def copy(self, site: str, image_id: str, *stores: str) -> None:
        self.glance(site, "image-import", image_id, "--import-method", "copy-image",
                    "--stores", ",".join(stores))  # fmt: skip
        deadline = time.monotonic() + 120
        while not set(stores) <= self.stores(site, image_id):
            image = self.image(site, image_id)
            assert not image.get("os_glance_failed_import"), image
            assert time.monotonic() < deadline, image
            time.sleep(0.2)

    def download(self, site: str, image_id: str) -> bytes:
        with httpx.Client(timeout=120) as client:
            reply = client.get(f"{self.urls[site]}/v2/images/{image_id}/file")
        assert reply.status_code == 200
        return reply.content

    def block_images(self, cluster: str) -> list[str]:
        with connect(self.targets[cluster]) as handle:
            return handle.list_images("images")


def write_topology(tmp: Path, kind: str) -> tuple[Path, dict[str, str]]:
    raw = topology.example(tmp / "data", ports=[free_port() for _ in SITES])
    targets = {name: c["embedded"] for name, c in raw["clusters"].items()}
    if kind == "ceph":
        for name in SITES:
            conf = ceph_conf(name)
            raw["clusters"][name] = {"ceph": str(conf)}
            external = conf.with_name(f"{name}.client.external.keyring")
            raw["clients"]["external"][name]["key"] = read_keyring(external, "external")
            targets[name] = f"ceph:{conf}"
    path = tmp / "topology.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, targets


@pytest.fixture(params=["embedded", pytest.param("ceph", marks=pytest.mark.ceph)])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    path, targets = write_topology(tmp_path, request.param)
    config = parse(yaml.safe_load(path.read_text()))
    urls = {name: config.site(name).url for name in SITES}
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ferry", "up", "--topology", str(path)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while "Ctrl-C stops every site" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    deployment = Deployment(urls, targets, proc, log)
    try:
        yield deployment
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def image_file(tmp: Path, name: str, size: int = 24 * MiB) -> Path:
    """Random data with a hole: 8 MiB of it are zeros that are never stored or sent."""
    data = bytearray(os.urandom(size))
    data[8 * MiB : 16 * MiB] = bytes(8 * MiB)
    path = tmp / name
    path.write_bytes(data)
    return path


def test_upload_at_central_copy_to_edges_one_record_local_reads(
    deployment: Deployment, tmp_path: Path
) -> None:
    src = image_file(tmp_path, "cirros.raw")
    image_id = deployment.upload("central", src, "cirros")
    assert deployment.stores("central", image_id) == {"default_backend"}
    deployment.copy("central", image_id, "dcn0", "dcn1")

    # One record, seen from every site's API, each naming the stores its own way.
    seen = {site: deployment.image(site, image_id) for site in SITES}
    same = ("id", "name", "status", "size", "checksum", "os_hash_value", "created_at")
    for site in SITES:
        assert {k: seen[site][k] for k in same} == {k: seen["central"][k] for k in same}
        urls = {loc["url"] for loc in seen[site]["locations"]}
        assert urls == {loc["url"] for loc in seen["central"]["locations"]}
        assert len(urls) == 3
    assert deployment.stores("central", image_id) == {"default_backend", "dcn0", "dcn1"}
    assert deployment.stores("dcn0", image_id) == {"central", "dcn0", "dcn1"}
    assert deployment.stores("dcn1", image_id) == {"central", "dcn0", "dcn1"}
    for cluster in SITES:
        assert image_id in deployment.block_images(cluster)

    # A download at dcn1 reads dcn1's cluster, and nothing from central's.
    before = {site: deployment.read_bytes(site) for site in SITES}
    assert deployment.download("dcn1", image_id) == src.read_bytes()
    after = {site: deployment.read_bytes(site) for site in SITES}
    assert after["dcn1"]["dcn1"] - before["dcn1"]["dcn1"] == 16 * MiB  # the non-zero data
    assert after["dcn1"]["central"] == before["dcn1"]["central"]
    assert after["central"] == before["central"] and after["dcn0"] == before["dcn0"]


def test_an_edge_image_stays_at_the_edge_until_copied_to_central_then_on(
    deployment: Deployment, tmp_path: Path
) -> None:
    src = image_file(tmp_path, "snapshot.raw", 12 * MiB)
    image_id = deployment.upload("dcn0", src, "dcn0-snapshot")
    assert deployment.stores("dcn0", image_id) == {"dcn0"}
    assert deployment.stores("central", image_id) == {"dcn0"}
    assert image_id in deployment.block_images("dcn0")
    assert image_id not in deployment.block_images("central")
    assert image_id not in deployment.block_images("dcn1")

    deployment.copy("dcn0", image_id, "central")  # dcn0's name for central's cluster
    assert deployment.stores("central", image_id) == {"default_backend", "dcn0"}
    assert image_id not in deployment.block_images("dcn1")

    central_reads = deployment.read_bytes("central")["central"]
    deployment.copy("central", image_id, "dcn1")
    assert deployment.stores("dcn1", image_id) == {"central", "dcn0", "dcn1"}
    # central copied from its own cluster, not across the WAN from dcn0
    assert deployment.read_bytes("central")["central"] - central_reads == 8 * MiB  # non-zero
    assert deployment.download("dcn1", image_id) == src.read_bytes()


def test_sigterm_stops_every_site_cleanly(deployment: Deployment) -> None:
    deployment.process.send_signal(signal.SIGTERM)
    assert deployment.process.wait(30) == 0
    assert "Stopped." in deployment.log.read_text()
    for url in deployment.urls.values():
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/versions", timeout=2)
