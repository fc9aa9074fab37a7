"""Fixtures shared by every test: clusters of each driver, and unique names."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.block import Cluster, connect
from ferry.block.embedded import EmbeddedCluster

# The real Ceph test clusters are started by scripts/test, which exports their confs as
# FERRY_TEST_CEPH_<NAME>=<conf path> (NAME = CENTRAL, DCN0, DCN1).
CEPH_SKIP_REASON = "no Ceph test cluster (scripts/test starts them; FERRY_TEST_CEPH_CENTRAL unset)"
EXTERNAL_CAPS = {
    "mon": "profile rbd",
    "osd": "profile rbd pool=vms, profile rbd pool=volumes, profile rbd pool=images",
}


def ceph_conf(name: str = "central") -> Path:
    conf = os.environ.get(f"FERRY_TEST_CEPH_{name.upper()}")
    if not conf:
        if os.environ.get("FERRY_REQUIRE_CEPH"):
            pytest.fail(f"FERRY_REQUIRE_CEPH is set but {CEPH_SKIP_REASON}")
        pytest.skip(CEPH_SKIP_REASON)
    return Path(conf)


def unique(prefix: str = "t") -> str:
    """A block image name no other test (or earlier run on a shared cluster) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    EmbeddedCluster.init(tmp_path / "cluster", "central")
    cluster = EmbeddedCluster.connect(tmp_path / "cluster")
    yield cluster
    cluster.close()


@pytest.fixture(params=["embedded", pytest.param("ceph", marks=pytest.mark.ceph)])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cluster(driver: str, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster as client.admin, on every driver."""
    if driver == "embedded":
        EmbeddedCluster.init(tmp_path / "cluster", "central")
        c: Cluster = EmbeddedCluster.connect(tmp_path / "cluster")
    else:
        c = connect(f"ceph:{ceph_conf()}", client="admin")
    yield c
    c.close()


@pytest.fixture
def external(driver: str, cluster: Cluster, tmp_path: Path) -> Iterator[Cluster]:
    """The same cluster as client.external, with the DCN guide's caps."""
    if driver == "embedded":
        assert isinstance(cluster, EmbeddedCluster)
        cluster.auth_add("client.external", dict(EXTERNAL_CAPS))
        key = cluster.auth_get("external").key
        c: Cluster = EmbeddedCluster.connect(tmp_path / "cluster", client="external", key=key)
    else:
        c = connect(f"ceph:{ceph_conf()}", client="external")
    yield c
    c.close()
