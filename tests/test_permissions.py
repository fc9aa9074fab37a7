"""What ferry keeps is private to its user: no mode bit for others, keys exactly 0600.

The tests run with umask 0, so they prove that every mode is set where the file or directory
is made, not left to the umask of the process that uses ferry.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry import topology
from ferry.block import ImageSpec
from ferry.block.embedded import EmbeddedCluster
from ferry.catalog import Catalog
from ferry.config import parse

MiB = 1 << 20


@pytest.fixture(autouse=True)
def no_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def data() -> Iterator[Path]:
    """A directory everyone may enter, so only ferry's own modes keep others out."""
    base = Path(tempfile.mkdtemp(prefix="ferry-modes-"))
    base.chmod(0o755)
    try:
        yield base / "data"
    finally:
        shutil.rmtree(base)


def provisioned(data: Path) -> Catalog:
    """The example topology provisioned under ``data``, with data in dcn0, and its catalogue
    (left open, so its -wal and -shm files exist)."""
    config = parse(topology.example(data))
    topology.provision(config)
    root = data / "clusters" / "dcn0"
    with EmbeddedCluster.connect(root) as cluster:
        cluster.create("images", "one", 8 * MiB)
        with cluster.open(ImageSpec("images", "one")) as image:
            image.write(0, b"\x42" * MiB)
            image.create_snap("snap")
            image.protect_snap("snap")
        cluster.clone(ImageSpec("images", "one", "snap"), "vms", "disk")
    catalog = Catalog(f"sqlite:///{data / 'catalog.db'}")
    catalog.migrate()
    return catalog


def test_clusters_and_the_catalogue_give_others_no_access(data: Path) -> None:
    with provisioned(data):
        modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [data, *data.rglob("*")]}
    assert {p.name for p in modes} >= {"catalog.db-wal", "catalog.db-shm", "auth.json"}
    assert [f"{p}: {m:o}" for p, m in modes.items() if m & 0o007] == []
    for p, mode in modes.items():
        # directories 0700; keys, keyrings, chunks, headers and the database 0600
        assert mode == (0o700 if p.is_dir() else 0o600), f"{p}: {mode:o}"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as the user nobody")
def test_the_user_nobody_cannot_read_a_chunk_or_the_catalogue(data: Path) -> None:
    provisioned(data).close()
    root = data / "clusters" / "dcn0"
    chunk = next(p for p in (root / "chunks").rglob("*") if p.is_file())
    control = data.parent / "public"
    control.write_text("anyone may read this")
    control.chmod(0o644)
    nobody = pwd.getpwnam("nobody")

    def as_nobody(read: str) -> int:
        pid = os.fork()
        if pid == 0:  # child: drop to nobody, then try
            code = 3
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                if read.endswith(".db"):
                    db = sqlite3.connect(f"file:{read}?mode=ro", uri=True)
                    db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                else:
                    Path(read).read_bytes()
                code = 0
            except (PermissionError, sqlite3.OperationalError):
                code = 13
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    assert as_nobody(str(control)) == 0  # the test can tell "allowed" from "refused"
    assert as_nobody(str(chunk)) == 13
    assert as_nobody(str(root / "auth.json")) == 13
    assert as_nobody(str(data / "catalog.db")) == 13


def test_opening_a_cluster_an_older_ferry_left_readable_tightens_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "c"
    keyring = EmbeddedCluster.init(root, "central")
    for path, loose in ((root, 0o755), (root / "auth.json", 0o644), (keyring, 0o644)):
        path.chmod(loose)
    with caplog.at_level(logging.WARNING), EmbeddedCluster.connect(root):
        pass
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "auth.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
    assert "readable by others: changed it to 600" in caplog.text


def test_an_existing_catalogue_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "catalog.db"
    db.touch(0o644)
    db.chmod(0o644)
    with Catalog(f"sqlite:///{db}") as catalog:
        catalog.migrate()
    for p in tmp_path.glob("catalog.db*"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
