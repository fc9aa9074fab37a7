"""The block protocol's contract: every driver must pass every test here.

Names are unique per test, so the suite also runs on shared, long-lived Ceph clusters.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ferry.block import Cluster, Extent, ImageSpec, ops
from ferry.errors import AlreadyExists, Conflict, Forbidden, InUse, InvalidRequest, NotFound
from tests.conftest import unique

MiB = 1 << 20
OBJ = 4 * MiB  # the default object size (order 22)


def make(cluster: Cluster, size: int = 16 * MiB, pool: str = "images") -> ImageSpec:
    spec = ImageSpec(pool, unique())
    cluster.create(pool, spec.name, size)
    return spec


def snap_of(spec: ImageSpec, snap: str = "snap") -> ImageSpec:
    return ImageSpec(spec.pool, spec.name, snap)


def protected_parent(cluster: Cluster, data: dict[int, bytes], size: int = 16 * MiB) -> ImageSpec:
    """A block image with ``data`` written at offsets and a protected snapshot ``snap``."""
    spec = make(cluster, size)
    with cluster.open(spec) as image:
        for offset, chunk in data.items():
            image.write(offset, chunk)
        image.create_snap("snap")
        image.protect_snap("snap")
    return spec


# --- block images ------------------------------------------------------------------------
def test_create_list_stat_remove(cluster: Cluster) -> None:
    spec = make(cluster, 10 * MiB)
    assert spec.name in cluster.list_images("images")
    with cluster.open(spec) as image:
        st = image.stat()
    assert (st.size, st.object_size, st.order, st.num_objects) == (10 * MiB, OBJ, 22, 3)
    assert st.parent is None and st.snap_count == 0 and st.lockers == ()
    assert "layering" in st.features
    with pytest.raises(AlreadyExists):
        cluster.create("images", spec.name, MiB)
    cluster.remove("images", spec.name)
    assert spec.name not in cluster.list_images("images")
    with pytest.raises(NotFound):
        cluster.open(spec)
    with pytest.raises(NotFound):
        cluster.remove("images", spec.name)


def test_pools_are_rbds_four(cluster: Cluster) -> None:
    assert {"images", "volumes", "vms", "backups"} <= set(cluster.list_pools())


def test_write_read_across_objects(cluster: Cluster) -> None:
    spec = make(cluster, 12 * MiB)
    blob = os.urandom(5 * MiB)
    with cluster.open(spec) as image:
        assert image.write(OBJ - 1000, blob) == len(blob)  # spans three objects, unaligned
        assert image.read(OBJ - 1000, len(blob)) == blob
        assert image.read(0, OBJ - 1000) == bytes(OBJ - 1000)  # never written: zeros
        assert image.read(11 * MiB, 4 * MiB) == bytes(MiB)  # clipped at the end
        image.write(OBJ, b"over")  # a partial overwrite keeps the rest of the object
        assert image.read(OBJ - 1000, 1004) == blob[:1000] + b"over"
        assert image.read(OBJ + 4, 100) == blob[1004:1104]


def test_write_past_the_end_is_refused(cluster: Cluster) -> None:
    spec = make(cluster, MiB)
    with cluster.open(spec) as image, pytest.raises(InvalidRequest):
        image.write(MiB - 1, b"xx")


def test_zero_write_clears_data(cluster: Cluster) -> None:
    spec = make(cluster, 8 * MiB)
    with cluster.open(spec) as image:
        image.write(0, os.urandom(OBJ))
        image.write(0, bytes(OBJ))
        assert image.read(0, OBJ) == bytes(OBJ)
        assert [e for e in image.diff() if e.exists] == []


def test_resize_grow_reads_zeros_and_shrink_forgets(cluster: Cluster) -> None:
    spec = make(cluster, 8 * MiB)
    with cluster.open(spec) as image:
        image.write(0, b"\xff" * (8 * MiB))
        image.resize(5 * MiB + 10)
        assert image.stat().size == 5 * MiB + 10
        image.resize(16 * MiB)
        assert image.read(0, 5 * MiB + 10) == b"\xff" * (5 * MiB + 10)
        assert image.read(5 * MiB + 10, 11 * MiB - 10) == bytes(11 * MiB - 10)


# --- snapshots ------------------------------------------------------------------------------
def test_snapshot_freezes_data(cluster: Cluster) -> None:
    spec = make(cluster)
    with cluster.open(spec) as image:
        image.write(0, b"before" * 1000)
        image.create_snap("s1")
        image.write(0, b"after!" * 1000)
        image.resize(20 * MiB)
        with pytest.raises(AlreadyExists):
            image.create_snap("s1")
        snaps = image.list_snaps()
        assert [(s.name, s.size, s.protected) for s in snaps] == [("s1", 16 * MiB, False)]
    with cluster.open(snap_of(spec, "s1")) as at:
        assert at.read(0, 6000) == b"before" * 1000
        assert at.stat().size == 16 * MiB
        with pytest.raises(InvalidRequest):
            at.write(0, b"x")  # a snapshot is read-only
    with cluster.open(spec) as image:
        assert image.read(0, 6000) == b"after!" * 1000
        image.remove_snap("s1")
        assert image.list_snaps() == []
        with pytest.raises(NotFound):
            image.remove_snap("s1")


def test_protected_snapshot_cannot_be_removed_and_image_with_snaps_neither(
    cluster: Cluster,
) -> None:
    spec = protected_parent(cluster, {0: b"x"})
    with cluster.open(spec) as image:
        with pytest.raises(InUse):
            image.remove_snap("snap")
        assert image.list_snaps()[0].protected
    with pytest.raises(InUse):
        cluster.remove(spec.pool, spec.name)
    with cluster.open(spec) as image:
        image.unprotect_snap("snap")
        image.remove_snap("snap")
    cluster.remove(spec.pool, spec.name)


# --- layering -------------------------------------------------------------------------------
def test_clone_needs_a_protected_snapshot(cluster: Cluster) -> None:
    spec = make(cluster)
    with cluster.open(spec) as image:
        image.create_snap("snap")
    with pytest.raises((Conflict, InvalidRequest)):
        cluster.clone(snap_of(spec), "vms", unique())
    with pytest.raises(NotFound):
        cluster.clone(snap_of(spec, "nosuch"), "vms", unique())


def test_clone_reads_parent_within_overlap_and_zeros_past_it(cluster: Cluster) -> None:
    blob = os.urandom(2 * MiB)
    parent = protected_parent(cluster, {3 * MiB: blob}, size=8 * MiB)
    child = ImageSpec("vms", unique())
    cluster.clone(snap_of(parent), child.pool, child.name)
    with cluster.open(child) as image:
        st = image.stat()
        assert st.parent is not None
        assert (st.parent.pool, st.parent.image, st.parent.snap) == ("images", parent.name, "snap")
        assert st.parent.overlap == 8 * MiB and st.size == 8 * MiB
        assert image.read(3 * MiB, 2 * MiB) == blob
        image.resize(32 * MiB)
        assert image.read(8 * MiB, 24 * MiB) == bytes(24 * MiB)


def test_writes_to_a_clone_never_change_the_parent(cluster: Cluster) -> None:
    blob = os.urandom(OBJ)
    parent = protected_parent(cluster, {0: blob})
    child = ImageSpec("volumes", unique())
    cluster.clone(snap_of(parent), child.pool, child.name)
    with cluster.open(child) as image:
        image.write(100, b"child")
        image.write(OBJ, b"more")
        assert image.read(0, 200) == blob[:100] + b"child" + blob[105:200]
    with cluster.open(snap_of(parent)) as p:
        assert p.read(0, OBJ) == blob
        assert p.read(OBJ, 4) == bytes(4)
    with cluster.open(parent) as p:
        assert p.read(0, OBJ) == blob


def test_children_block_unprotect_and_flatten_releases_them(cluster: Cluster) -> None:
    blob = os.urandom(3 * MiB)
    parent = protected_parent(cluster, {MiB: blob})
    kids = [ImageSpec("vms", unique()), ImageSpec("volumes", unique())]
    for kid in kids:
        cluster.clone(snap_of(parent), kid.pool, kid.name)
    with cluster.open(parent) as p:
        assert sorted(str(c) for c in p.children("snap")) == sorted(str(k) for k in kids)
        with pytest.raises(InUse):
            p.unprotect_snap("snap")
    for kid in kids:
        with cluster.open(kid) as image:
            image.flatten()
            assert image.stat().parent is None
            assert image.read(MiB, 3 * MiB) == blob
        with pytest.raises(InvalidRequest):
            cluster.open(kid).flatten()
    with cluster.open(parent) as p:
        assert p.children("snap") == []
        p.unprotect_snap("snap")
        p.remove_snap("snap")
    cluster.remove(parent.pool, parent.name)  # the flattened clones no longer need it
    for kid in kids:
        with cluster.open(kid) as image:
            assert image.read(MiB, 3 * MiB) == blob


def test_removing_a_clone_releases_the_parent(cluster: Cluster) -> None:
    parent = protected_parent(cluster, {0: b"p"})
    kid = ImageSpec("vms", unique())
    cluster.clone(snap_of(parent), kid.pool, kid.name)
    cluster.remove(kid.pool, kid.name)
    with cluster.open(parent) as p:
        assert p.children("snap") == []
        p.unprotect_snap("snap")


def test_clone_of_a_clone_reads_through_both(cluster: Cluster) -> None:
    parent = protected_parent(cluster, {0: b"grand" * 10})
    mid = ImageSpec("volumes", unique())
    cluster.clone(snap_of(parent), mid.pool, mid.name)
    with cluster.open(mid) as image:
        image.write(OBJ, b"middle")
        image.create_snap("snap")
        image.protect_snap("snap")
    leaf = ImageSpec("vms", unique())
    cluster.clone(snap_of(mid), leaf.pool, leaf.name)
    with cluster.open(leaf) as image:
        assert image.read(0, 50) == b"grand" * 10
        assert image.read(OBJ, 6) == b"middle"
        image.flatten()
        assert image.read(0, 50) == b"grand" * 10 and image.read(OBJ, 6) == b"middle"


def test_shrinking_a_clone_cuts_the_overlap(cluster: Cluster) -> None:
    parent = protected_parent(cluster, {0: b"\xaa" * (8 * MiB)}, size=8 * MiB)
    kid = ImageSpec("vms", unique())
    cluster.clone(snap_of(parent), kid.pool, kid.name)
    with cluster.open(kid) as image:
        image.resize(2 * MiB)
        image.resize(8 * MiB)
        st = image.stat()
        assert st.parent is not None and st.parent.overlap == 2 * MiB
        assert image.read(0, 2 * MiB) == b"\xaa" * (2 * MiB)
        assert image.read(2 * MiB, 6 * MiB) == bytes(6 * MiB)
        image.flatten()
        assert image.read(0, 8 * MiB) == b"\xaa" * (2 * MiB) + bytes(6 * MiB)


# --- diff -----------------------------------------------------------------------------------
def test_diff_reports_exactly_the_written_extents(cluster: Cluster) -> None:
    spec = make(cluster, 40 * MiB)
    with cluster.open(spec) as image:
        image.write(0, os.urandom(OBJ))
        image.write(2 * OBJ, os.urandom(2 * OBJ))
        image.write(9 * OBJ, os.urandom(OBJ))
        assert list(image.diff()) == [
            Extent(0, OBJ),
            Extent(2 * OBJ, 2 * OBJ),
            Extent(9 * OBJ, OBJ),
        ]
        image.create_snap("s1")
        image.write(5 * OBJ, os.urandom(OBJ))  # new data
        image.write(2 * OBJ, bytes(OBJ))  # zeroed
        assert list(image.diff("s1")) == [Extent(2 * OBJ, OBJ, False), Extent(5 * OBJ, OBJ)]
        image.create_snap("s2")
        assert list(image.diff("s2")) == []
    with cluster.open(snap_of(spec, "s2")) as at:  # a snapshot's diff since an older one
        assert list(at.diff("s1")) == [Extent(2 * OBJ, OBJ, False), Extent(5 * OBJ, OBJ)]


def test_diff_of_a_clone_with_and_without_parent(cluster: Cluster) -> None:
    parent = protected_parent(cluster, {0: os.urandom(OBJ)})
    kid = ImageSpec("vms", unique())
    cluster.clone(snap_of(parent), kid.pool, kid.name)
    with cluster.open(kid) as image:
        image.write(3 * OBJ, os.urandom(OBJ))
        assert list(image.diff()) == [Extent(0, OBJ), Extent(3 * OBJ, OBJ)]
        assert list(image.diff(include_parent=False)) == [Extent(3 * OBJ, OBJ)]
        assert ops.du(image) == (16 * MiB, OBJ)


# --- locks ----------------------------------------------------------------------------------
def test_exclusive_lock_is_shown_and_exclusive(cluster: Cluster) -> None:
    spec = make(cluster)
    with cluster.open(spec) as image:
        image.lock_exclusive("nova-1")
        image.lock_exclusive("nova-1")  # taking your own lock again is fine
        (locker,) = image.stat().lockers
        assert locker.cookie == "nova-1" and locker.client == cluster.client
        with pytest.raises(Conflict):
            image.lock_exclusive("other")
        rows = {r.name: r for r in ops.ls_long(cluster, "images")}
        assert rows[spec.name].lock == "excl"
        image.unlock("nova-1")
        assert image.stat().lockers == ()
        with pytest.raises(NotFound):
            image.unlock("nova-1")


# --- the conveniences every driver gets ----------------------------------------------------
def test_ls_long_rows(cluster: Cluster) -> None:
    parent = protected_parent(cluster, {0: b"x"})
    kid = unique()
    cluster.clone(snap_of(parent), "volumes", kid)
    rows = {r.name: r for r in ops.ls_long(cluster, "images")}
    assert rows[parent.name].parent == "" and not rows[parent.name].protected
    assert rows[f"{parent.name}@snap"].protected
    (row,) = [r for r in ops.ls_long(cluster, "volumes") if r.name == kid]
    assert row.parent == f"images/{parent.name}@snap" and row.fmt == 2


def test_import_export_roundtrip_is_sparse(cluster: Cluster, tmp_path: Path) -> None:
    src = tmp_path / "in.raw"
    blob = os.urandom(MiB)
    with open(src, "wb") as f:
        f.truncate(64 * MiB)
        f.seek(20 * MiB)
        f.write(blob)
        f.seek(50 * MiB)
        f.write(bytes(OBJ))  # explicit zeros must not be stored either
    spec = ImageSpec("images", unique())
    moved = ops.import_file(cluster, src, spec)
    assert moved.size == 64 * MiB and moved.written == len(blob)  # zeros were never written
    dst = tmp_path / "out.raw"
    with cluster.open(spec) as image:
        ops.export_file(image, dst)
    assert src.read_bytes() == dst.read_bytes()
    assert dst.stat().st_blocks * 512 <= 2 * OBJ  # the export is sparse too


# --- caps -----------------------------------------------------------------------------------
def test_caps_deny_unnamed_pools_for_every_verb(cluster: Cluster, external: Cluster) -> None:
    parent = protected_parent(cluster, {0: b"x"})
    denied = make(cluster, MiB, pool="backups")
    # Allowed where the caps name the pool ...
    assert parent.name in external.list_images("images")
    ok = unique()
    external.clone(snap_of(parent), "vms", ok)
    with external.open(ImageSpec("vms", ok)) as image:
        image.write(0, b"fine")
    # ... and refused, with Ceph's EPERM wording, for every verb on a pool they don't name.
    attempts = {
        "ls": lambda: external.list_images("backups"),
        "create": lambda: external.create("backups", unique(), MiB),
        "open": lambda: external.open(denied),
        "rm": lambda: external.remove("backups", denied.name),
        "clone": lambda: external.clone(snap_of(parent), "backups", unique()),
    }
    for verb, attempt in attempts.items():
        with pytest.raises(Forbidden, match=r"backups.*not permitted"):
            attempt()
        print("refused as expected:", verb)
    assert denied.name in cluster.list_images("backups")  # nothing was touched
