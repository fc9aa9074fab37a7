"""The Ceph driver against real clusters, checked with Ceph's own ``rbd`` command.

The contract suite (test_contract.py) already runs every block verb on Ceph; these tests
check what only real Ceph can show: that the ``rbd`` CLI reads what ferry wrote, that cephx
caps refuse with Ceph's wording, that a copy between two clusters moves only non-zero data,
and that written zeros stay thin in librbd.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.block import BlockImage, Cluster, ImageSpec, connect, ops
from ferry.errors import Conflict, FerryError, Forbidden, InvalidRequest
from tests.block.test_contract import protected_parent
from tests.conftest import ceph_conf, unique

pytestmark = pytest.mark.ceph

MiB = 1 << 20
GiB = 1 << 30
OBJ = 4 * MiB


@pytest.fixture
def central() -> Iterator[Cluster]:
    """The central cluster as client.external, the way Glance and Nova connect."""
    c = connect(f"ceph:{ceph_conf('central')}", client="external")
    yield c
    c.close()


@pytest.fixture
def dcn0() -> Iterator[Cluster]:
    c = connect(f"ceph:{ceph_conf('dcn0')}", client="external")
    yield c
    c.close()


def run_rbd(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``rbd`` command as client.external."""
    if shutil.which("rbd") is None:
        pytest.skip("the rbd command is not installed (ceph-common)")
    return subprocess.run(
        ["rbd", "-c", str(conf), "--id", "external", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rbd(conf: Path, *args: str) -> str:
    """Run ``rbd`` as client.external; it must succeed; return its stdout."""
    proc = run_rbd(conf, *args)
    assert proc.returncode == 0, f"rbd {' '.join(args)} failed: {proc.stderr}"
    return proc.stdout


def purge(cluster: Cluster, parent: ImageSpec, *clones: ImageSpec) -> None:
    """Remove clones, then the parent with its snapshot (tests share long-lived clusters)."""
    for kid in clones:
        cluster.remove(kid.pool, kid.name)
    with cluster.open(parent) as image:
        for snap in image.list_snaps():
            if snap.protected:
                image.unprotect_snap(snap.name)
            image.remove_snap(snap.name)
    cluster.remove(parent.pool, parent.name)


def objects(image: BlockImage) -> set[int]:
    """Indexes of the objects the diff reports as holding data."""
    return {
        idx
        for ext in image.diff()
        if ext.exists
        for idx in range(ext.offset // OBJ, -(-ext.end // OBJ))
    }


def sha256(image: BlockImage) -> str:
    """The hash of a full read, in pieces, so memory stays flat."""
    h = hashlib.sha256()
    size = image.stat().size
    for pos in range(0, size, 32 * MiB):
        h.update(image.read(pos, min(32 * MiB, size - pos)))
    return h.hexdigest()


def test_rbd_cli_reads_what_ferry_wrote(central: Cluster, tmp_path: Path) -> None:
    conf = ceph_conf("central")
    blob = os.urandom(MiB)
    parent = protected_parent(central, {3 * MiB: blob}, size=8 * MiB)
    disk = ImageSpec("vms", f"{unique('inst')}_disk")  # as Nova names an instance's disk
    volume = ImageSpec("volumes", f"volume-{unique('vol')}")  # as Cinder names a volume
    for kid in (disk, volume):
        central.clone(ImageSpec(parent.pool, parent.name, "snap"), kid.pool, kid.name)
    try:
        header, *lines = rbd(conf, "ls", "-l", "images").splitlines()
        prot = header.index("PROT")
        rows = {line.split()[0]: line for line in lines}
        assert rows[parent.name][prot : prot + 4].strip() == ""
        assert rows[f"{parent.name}@snap"][prot : prot + 4].strip() == "yes"

        for kid in (disk, volume):
            info = rbd(conf, "info", str(kid))
            assert f"parent: images/{parent.name}@snap" in info
            assert "features: layering" in info and "format: 2" in info

        children = rbd(conf, "children", f"images/{parent.name}@snap").split()
        assert sorted(children) == sorted([str(disk), str(volume)])

        out = tmp_path / "snap.raw"
        rbd(conf, "export", "--no-progress", f"images/{parent.name}@snap", str(out))
        assert out.read_bytes() == bytes(3 * MiB) + blob + bytes(4 * MiB)
    finally:
        purge(central, parent, disk, volume)


def test_external_is_refused_on_backups_with_cephs_wording(central: Cluster) -> None:
    with pytest.raises(Forbidden, match=r"backups.*Operation not permitted$") as info:
        central.create("backups", unique(), MiB)
    assert getattr(info.value.__cause__, "errno", None) == errno.EPERM  # librbd's own EPERM
    with pytest.raises(Forbidden, match=r"backups.*Operation not permitted$"):
        central.list_images("backups")
    # The same client, through Ceph's own CLI, gets the same answer.
    proc = run_rbd(ceph_conf("central"), "ls", "backups")
    assert proc.returncode != 0 and "(1) Operation not permitted" in proc.stderr


@pytest.mark.slow
def test_copy_between_clusters_moves_only_nonzero_data(central: Cluster, dcn0: Cluster) -> None:
    # Even indexes only, so the 8 MiB zero run (two objects) never touches a data object.
    picked = secrets.SystemRandom().sample(range(0, GiB // OBJ, 2), 12)
    data_objs, zeroed, zero_run = sorted(picked[:10]), picked[10], picked[11]
    spec = ImageSpec("images", unique("img"))
    central.create(spec.pool, spec.name, GiB)
    try:
        with central.open(spec) as image:
            for idx in (*data_objs, zeroed):
                image.write(idx * OBJ, os.urandom(OBJ))
            # Explicit zeros: over data, into a never-written range, inside a data object.
            image.write(zeroed * OBJ, bytes(OBJ))
            image.write(zero_run * OBJ, bytes(8 * MiB))
            image.write(data_objs[0] * OBJ + 100, bytes(1000))
            image.create_snap("snap")
            image.protect_snap("snap")

        with central.open(ImageSpec(spec.pool, spec.name, "snap")) as source:
            assert objects(source) == set(data_objs)  # zeros never allocated at the source
            moved = ops.copy_image(source, dcn0, spec.pool, spec.name)  # same id at each site
            src_hash = sha256(source)
        try:
            assert moved.size == GiB
            assert moved.read == moved.written == len(data_objs) * OBJ  # only non-zero data
            with dcn0.open(spec, read_only=True) as copy:
                assert objects(copy) == set(data_objs)
                assert sha256(copy) == src_hash
        finally:
            dcn0.remove(spec.pool, spec.name)
    finally:
        purge(central, spec)


def test_written_zeros_stay_thin(central: Cluster) -> None:
    spec = ImageSpec("images", unique())
    central.create(spec.pool, spec.name, 64 * MiB)
    try:
        with central.open(spec) as image:
            image.write(0, bytes(8 * MiB))  # object-aligned
            image.write(20 * MiB + 5, bytes(8 * MiB))  # unaligned, across objects
            assert list(image.diff()) == []
            assert image.read(0, 8 * MiB) == bytes(8 * MiB)
        assert json.loads(rbd(ceph_conf("central"), "diff", str(spec), "--format", "json")) == []
    finally:
        central.remove(spec.pool, spec.name)


def test_a_write_running_past_the_end_writes_nothing(central: Cluster) -> None:
    # librbd alone would write the bytes that fit and then fail; ferry refuses up front.
    spec = ImageSpec("images", unique())
    central.create(spec.pool, spec.name, MiB)
    try:
        with central.open(spec) as image:
            with pytest.raises(InvalidRequest):
                image.write(MiB - 2, b"abcd")
            assert image.read(MiB - 2, 2) == bytes(2)
            assert list(image.diff()) == []
    finally:
        central.remove(spec.pool, spec.name)


def test_a_lock_held_by_another_connection_is_a_conflict(central: Cluster) -> None:
    spec = ImageSpec("images", unique())
    central.create(spec.pool, spec.name, MiB)
    other = connect(f"ceph:{ceph_conf('central')}", client="external")
    try:
        with central.open(spec) as mine, other.open(spec) as theirs:
            theirs.lock_exclusive("nova-1")
            # Ceph locks belong to a connection, not to a cephx name: same name, other holder.
            with pytest.raises(Conflict):
                mine.lock_exclusive("nova-1")
            (locker,) = mine.stat().lockers
            assert locker.cookie == "nova-1" and locker.client.isdigit()  # client.<global id>
            theirs.unlock("nova-1")
            mine.lock_exclusive("nova-1")
            mine.unlock("nova-1")
    finally:
        other.close()
        central.remove(spec.pool, spec.name)


def test_errors_are_chained_to_the_native_ones(central: Cluster) -> None:
    with pytest.raises(FerryError) as info:
        central.open(ImageSpec("images", unique()))
    assert type(info.value.__cause__).__module__ == "rbd"
