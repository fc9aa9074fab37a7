"""Crash, corruption and concurrency tests of the embedded cluster.

A crash is a real process death: a forked child runs one operation and ``os._exit``s at the
Nth durable step (before a rename, a directory fsync or an unlink). The parent then checks
that the cluster is clean and in the old or the new state, never a mix. This kills the
process, not the machine: data already written but not fsynced survives here, so the test
proves the ordering and the single commit point, not the disk's flush behaviour.
"""

from __future__ import annotations

import errno
import itertools
import multiprocessing
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ferry.block import ImageSpec, ops
from ferry.block.embedded import EmbeddedCluster, disk
from ferry.block.embedded.disk import Step
from ferry.errors import StorageFull

MiB = 1 << 20
OBJ = 4 * MiB
CRASHED = 70
Op = Callable[[EmbeddedCluster], None]
State = Callable[[EmbeddedCluster], object]


def crash_at(n: int) -> Step:
    count = 0

    def step(label: str) -> None:
        nonlocal count
        count += 1
        if count == n:
            os._exit(CRASHED)

    return step


def run_crashing(root: Path, op: Op, n: int) -> bool:
    """Run ``op`` in a child that dies at durable step ``n``; True if it died."""
    pid = os.fork()
    if pid == 0:  # child
        try:
            op(EmbeddedCluster.connect(root, step=crash_at(n)))
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code in (0, CRASHED), f"operation failed at step {n} with exit {code}"
    return code == CRASHED


def crash_every_step(root: Path, op: Op, state: State) -> tuple[object, list[object], object]:
    """Crash ``op`` at step 1, 2, ... until it completes, restoring the cluster each time.

    Returns the state before, the state after each crash (each time ``check`` was clean),
    and the state after the complete run.
    """
    pristine = root.parent / "pristine"
    shutil.copytree(root, pristine)
    before = state(EmbeddedCluster.connect(root))
    crashed: list[object] = []
    for n in itertools.count(1):
        shutil.rmtree(root)
        shutil.copytree(pristine, root)
        died = run_crashing(root, op, n)
        cluster = EmbeddedCluster.connect(root)
        report = cluster.check()
        assert report.ok, f"crash at step {n}: {report.errors}"
        if not died:
            return before, crashed, state(cluster)
        crashed.append(state(cluster))
    raise AssertionError("unreachable")


def assert_crash_safe(root: Path, op: Op, state: State) -> None:
    """Every crash leaves the old state or the new one, never a mix."""
    before, crashed, after = crash_every_step(root, op, state)
    assert before != after
    assert len(crashed) >= 2, "the operation has too few durable steps to be tested"
    for n, got in enumerate(crashed, 1):
        assert got in (before, after), f"crash at step {n} left a state that is neither"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "c"
    EmbeddedCluster.init(root, "central")
    c = EmbeddedCluster.connect(root)
    c.create("images", "base", 16 * MiB)
    with c.open(ImageSpec("images", "base")) as image:
        image.write(0, b"\x11" * OBJ)
        image.write(2 * OBJ, b"\x22" * OBJ)
        image.create_snap("snap")
        image.protect_snap("snap")
    c.clone(ImageSpec("images", "base", "snap"), "vms", "disk")
    return root


def content(spec: ImageSpec) -> State:
    def state(c: EmbeddedCluster) -> object:
        if spec.name not in c.list_images(spec.pool):
            return None
        with c.open(spec) as image:
            st = image.stat()
            return (image.read(0, st.size), st.parent, [s.name for s in image.list_snaps()])

    return state


def with_children(inner: State) -> State:
    def state(c: EmbeddedCluster) -> object:
        with c.open(ImageSpec("images", "base")) as image:
            kids = [str(k) for k in image.children("snap")]
        return (inner(c), kids)

    return state


def test_crash_during_write(root: Path) -> None:
    def op(c: EmbeddedCluster) -> None:
        with c.open(ImageSpec("images", "base")) as image:
            image.write(OBJ - 10, b"\x33" * (2 * OBJ))  # three objects, two chunks, a segment

    assert_crash_safe(root, op, content(ImageSpec("images", "base")))


def test_crash_during_snapshot(root: Path) -> None:
    def op(c: EmbeddedCluster) -> None:
        with c.open(ImageSpec("images", "base")) as image:
            image.create_snap("s2")

    assert_crash_safe(root, op, content(ImageSpec("images", "base")))


def test_crash_during_clone(root: Path) -> None:
    def op(c: EmbeddedCluster) -> None:
        c.clone(ImageSpec("images", "base", "snap"), "volumes", "volume-1")

    assert_crash_safe(root, op, with_children(content(ImageSpec("volumes", "volume-1"))))


def test_crash_during_flatten(root: Path) -> None:
    disk = ImageSpec("vms", "disk")
    cluster = EmbeddedCluster.connect(root)
    with cluster.open(disk) as image:
        image.write(100, b"own")

    def op(c: EmbeddedCluster) -> None:
        with c.open(disk) as image:
            image.flatten()

    assert_crash_safe(root, op, with_children(content(disk)))


def test_crash_during_remove(root: Path) -> None:
    def op(c: EmbeddedCluster) -> None:
        c.remove("vms", "disk")

    assert_crash_safe(root, op, with_children(content(ImageSpec("vms", "disk"))))


# --- corruption ---------------------------------------------------------------------------
def _chunk_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "chunks").rglob("*") if p.is_file())


def test_check_reports_a_flipped_byte(root: Path) -> None:
    cluster = EmbeddedCluster.connect(root)
    assert cluster.check().ok
    victim = _chunk_files(root)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    report = cluster.check()
    assert not report.ok
    assert any(victim.name in e and "does not match" in e for e in report.errors)
    assert victim.read_bytes() == bytes(data)  # check reports; it never repairs


def test_check_reports_a_missing_chunk_and_a_broken_segment(root: Path) -> None:
    cluster = EmbeddedCluster.connect(root)
    gone = _chunk_files(root)[0]
    gone.unlink()
    assert any(gone.name in e and "is missing" in e for e in cluster.check().errors)
    segment = next(p for p in (root / "meta").rglob("*") if p.is_file())
    segment.write_bytes(segment.read_bytes().replace(b"{", b"[", 1))
    assert any(segment.name in e for e in cluster.check().errors)


def test_gc_removes_only_unreferenced_chunks(root: Path) -> None:
    cluster = EmbeddedCluster.connect(root)
    base = ImageSpec("images", "base")
    with cluster.open(base) as image:
        image.create_snap("old")
        image.write(3 * OBJ, b"\x44" * OBJ)  # referenced by head only
        image.remove_snap("old")
        image.write(OBJ, b"\x55" * OBJ)
        image.write(OBJ, b"\x66" * OBJ)  # the \x55 chunk is now garbage
    images = [("images", "base"), ("images", "base@snap"), ("vms", "disk")]
    before = {s: _read_all(cluster, s) for s in images}
    chunks_before = len(_chunk_files(root))
    report = cluster.gc()
    assert report.chunks == 1 and report.segments >= 1
    assert len(_chunk_files(root)) == chunks_before - 1
    assert {s: _read_all(cluster, s) for s in images} == before
    after = cluster.check()
    assert after.ok and after.notes == []
    assert cluster.gc().chunks == 0  # nothing left to collect


def _read_all(cluster: EmbeddedCluster, where: tuple[str, str]) -> bytes:
    pool, rest = where
    name, _, snap = rest.partition("@")
    with cluster.open(ImageSpec(pool, name, snap or None)) as image:
        return image.read(0, image.stat().size)


# --- two writers ------------------------------------------------------------------------
def _writer(root: str, which: int, rounds: int) -> None:
    cluster = EmbeddedCluster.connect(Path(root))
    with cluster.open(ImageSpec("images", "shared")) as image:
        for r in range(rounds):
            # Both processes write into the same objects, at different offsets: a
            # read-modify-write without the image lock would lose the other's update.
            image.write(r * OBJ + which * 4096, bytes([which + 1]) * 4096)


def test_two_processes_writing_one_image_do_not_corrupt_it(tmp_path: Path) -> None:
    root = tmp_path / "c"
    EmbeddedCluster.init(root, "central")
    cluster = EmbeddedCluster.connect(root)
    rounds = 24
    cluster.create("images", "shared", rounds * OBJ)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(root), w, rounds)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with cluster.open(ImageSpec("images", "shared")) as image:
        for r in range(rounds):
            assert image.read(r * OBJ, 8192) == b"\x01" * 4096 + b"\x02" * 4096, f"object {r}"
    assert cluster.check().ok


# --- a full disk ----------------------------------------------------------------------------
@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 64 MiB filesystem (tmpfs), so writes fail with ENOSPC as on a full disk."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def used(mnt: Path) -> int:
    st = os.statvfs(mnt)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def edge_with(root: Path, spec: ImageSpec, size: int) -> EmbeddedCluster:
    """A new cluster holding ``spec``, its first object filled with 0x5a."""
    EmbeddedCluster.init(root, "edge")
    cluster = EmbeddedCluster.connect(root)
    cluster.create(spec.pool, spec.name, size)
    with cluster.open(spec) as image:
        image.write(0, b"\x5a" * OBJ)
    return cluster


def test_a_full_disk_is_a_clear_error_and_leaves_the_cluster_as_it_was(
    tiny_fs: Path, tmp_path: Path
) -> None:
    root, keep = tiny_fs / "c", ImageSpec("images", "keep")
    cluster = edge_with(root, keep, 8 * MiB)
    before, used_before = files(root), used(tiny_fs)
    big = tmp_path / "big.raw"
    big.write_bytes(os.urandom(96 * MiB))  # half again what the disk holds
    with pytest.raises(StorageFull, match="no space left"):
        ops.import_file(cluster, big, ImageSpec("images", "big"))
    assert files(root) == before  # no chunk, segment, header or lock file left
    assert abs(used(tiny_fs) - used_before) < MiB
    report = cluster.check()
    assert report.ok and report.notes == []
    with cluster.open(keep) as image:
        assert image.read(0, OBJ) == b"\x5a" * OBJ
    # the space is usable at once, with no gc: a 16 MiB import and a copy fit
    small = tmp_path / "small.raw"
    small.write_bytes(os.urandom(16 * MiB))
    ops.import_file(cluster, small, ImageSpec("images", "after"))
    with cluster.open(ImageSpec("images", "after")) as image:
        ops.copy_image(image, cluster, "volumes", "copy")
    assert cluster.check().ok


def test_a_too_large_write_leaves_the_image_and_the_disk_as_they_were(tiny_fs: Path) -> None:
    root, spec = tiny_fs / "c", ImageSpec("images", "disk")
    cluster = edge_with(root, spec, 96 * MiB)
    with cluster.open(spec) as image:
        before, used_before = files(root), used(tiny_fs)
        with pytest.raises(StorageFull):
            image.write(0, os.urandom(96 * MiB))  # one call: all its chunks, one commit
        assert files(root) == before
        assert abs(used(tiny_fs) - used_before) < MiB
        assert image.read(0, OBJ + 1) == b"\x5a" * OBJ + b"\0"
        image.write(OBJ, b"\x22" * OBJ)
    assert cluster.check().ok


# --- what a failed or aborted write leaves ---------------------------------------------------
def test_an_aborted_upload_leaves_no_chunk_that_was_not_there(root: Path) -> None:
    cluster = EmbeddedCluster.connect(root)
    before = files(root)
    cluster.create("images", "upload", 16 * MiB)
    with cluster.open(ImageSpec("images", "upload")) as image:
        image.write(0, b"\x11" * OBJ)  # the same data as base's first object: shared
        image.write(OBJ, b"\x77" * OBJ)
        image.write(3 * OBJ, b"\x78" * 100)
    cluster.remove("images", "upload")  # what an aborted upload does
    # Only the segments that each committed write replaced are left, for gc, as after any
    # overwrite: a few bytes per write, not data.
    assert {f for f in files(root) if f.parts[0] != "meta"} == {
        f for f in before if f.parts[0] != "meta"
    }
    report = cluster.check()
    assert report.ok and all("segment(s) unreferenced" in n for n in report.notes)
    assert _read_all(cluster, ("images", "base"))[:OBJ] == b"\x11" * OBJ


class _FailingOs:
    """``os`` for disk.py, where write, pwrite, ftruncate and fsync fail with ENOSPC at the
    ``fail_at``-th call (counted over all four, from every chunk writer thread)."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.calls = 0
        self.failed: str | None = None
        self._lock = threading.Lock()
        for name in ("write", "pwrite", "ftruncate", "fsync"):
            setattr(self, name, self._failing(name, getattr(os, name)))

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    def _failing(self, name: str, real: Callable[..., object]) -> Callable[..., object]:
        def call(fd: int, *args: object) -> object:
            with self._lock:
                self.calls += 1
                fail = self.calls == self.fail_at
            if fail:
                self.failed = f"{name} {os.readlink(f'/proc/self/fd/{fd}')}"
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd, *args)

        return call


def test_enospc_at_any_write_or_fsync_leaves_the_previous_header(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ImageSpec("images", "base")
    cluster = EmbeddedCluster.connect(root)
    old, before = _read_all(cluster, ("images", "base")), files(root)
    data = os.urandom(3 * OBJ)
    for n in itertools.count(1):
        fake = _FailingOs(n)
        monkeypatch.setattr(disk, "os", fake)
        try:
            with cluster.open(spec) as image:
                image.write(OBJ // 2, data)  # partial objects, new chunks, a new segment
        except StorageFull:
            pass
        finally:
            monkeypatch.undo()
        assert cluster.check().ok, fake.failed
        if fake.failed is None:
            break  # the write went through: every step before it was tried
        pool_dir = str(root / "pools" / "images")
        if fake.failed == f"fsync {pool_dir}":  # after the rename: the write happened
            assert _read_all(cluster, ("images", "base"))[OBJ // 2 :][: len(data)] == data
            return
        assert _read_all(cluster, ("images", "base")) == old, fake.failed
        assert files(root) == before, fake.failed
    raise AssertionError("the write never reached its commit's directory fsync")


def test_a_failed_write_never_deletes_a_chunk_another_image_committed(root: Path) -> None:
    shared = b"\x99" * OBJ

    def other_writer_commits_first(label: str) -> None:
        if label == "rename images/base.json":  # the failing write's commit point
            with EmbeddedCluster.connect(root) as other, other.open(ImageSpec("vms", "disk")) as d:
                d.write(0, shared)  # finds the failing write's new chunk and uses it
            raise OSError(errno.ENOSPC, "No space left on device")

    cluster = EmbeddedCluster.connect(root)
    notes = cluster.check().notes  # the segment base's first write replaced
    failing = EmbeddedCluster.connect(root, step=other_writer_commits_first)
    with pytest.raises(StorageFull), failing.open(ImageSpec("images", "base")) as image:
        image.write(0, shared + b"\x98" * OBJ)
    report = cluster.check()
    assert report.ok and report.notes == notes  # the \x98 chunk went, the \x99 one stayed
    assert _read_all(cluster, ("vms", "disk"))[:OBJ] == shared
