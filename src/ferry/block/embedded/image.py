"""An open block image on the embedded cluster.

Every change runs under the image's flock: read the header fresh, store new chunks and
segments (write-once, so a crash leaves only garbage), then replace the header — the one
commit point. Reads need no image lock: headers are replaced atomically and everything they
reference is immutable.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from ferry.block.embedded import maintenance
from ferry.block.embedded.header import ZERO, Header, Lock, ParentLink, Snap, View, check_size
from ferry.block.embedded.layout import CLIPPED, check_name
from ferry.block.embedded.store import Pending
from ferry.block.protocol import (
    ChildRef,
    Closing,
    Extent,
    ImageSpec,
    ImageStat,
    Locker,
    ParentInfo,
    SnapInfo,
)
from ferry.errors import AlreadyExists, Conflict, FerryError, InUse, InvalidRequest, NotFound

if TYPE_CHECKING:
    from ferry.block.embedded.cluster import EmbeddedCluster


class EmbeddedImage(Closing):
    """A handle; it keeps no state between calls but its name."""

    def __init__(self, cluster: EmbeddedCluster, spec: ImageSpec, *, read_only: bool) -> None:
        self._cluster = cluster
        self._layout = cluster.layout
        self._spec = spec
        self._read_only = read_only or spec.snap is not None
        self._closed = False

    @property
    def spec(self) -> ImageSpec:
        return self._spec

    # --- helpers ---------------------------------------------------------------------------
    def _header(self) -> Header:
        if self._closed:
            raise InvalidRequest(f"block image {self._spec} is closed")
        return self._layout.read_header(self._spec.pool, self._spec.name)

    def _view(self, header: Header) -> View:
        if self._spec.snap is None:
            return header.head
        return self._snap(header, self._spec.snap).view

    def _snap(self, header: Header, name: str) -> Snap:
        snap = header.snap(name)
        if snap is None:
            raise NotFound(f"snapshot {self._spec.pool}/{self._spec.name}@{name} does not exist")
        return snap

    def _writable(self) -> None:
        if self._read_only:
            raise InvalidRequest(f"{self._spec} is read-only (a snapshot or opened read-only)")
        self._cluster.require(self._spec.pool, write=True)

    @contextmanager
    def _change(self) -> Iterator[_Change]:
        """Lock, read the header fresh, let the caller build a new one, commit it once.

        If it fails (a full disk, say), the chunks and segments it made and no header uses
        are removed again, once the locks are released: the cluster is as it was.
        """
        self._writable()
        pool, name = self._spec.pool, self._spec.name
        pending = Pending()
        try:
            with self._layout.shared(), self._layout.image_lock(pool, name):
                c = _Change(self._header(), pending)
                yield c
                if c.header is not c.before:
                    self._layout.commit(pool, name, c.header, pending.dirs)
                    for parent in c.before.parent_snaps() - c.header.parent_snaps():
                        self._cluster.forget_child(*parent, self._spec)
        except BaseException:
            with contextlib.suppress(FerryError):  # left for gc; the first error is the news
                maintenance.release(self._layout, pending.created)
            raise

    # --- I/O -------------------------------------------------------------------------------
    def stat(self) -> ImageStat:
        with self._layout.shared():
            h = self._header()
            view = self._view(h)
            snap = h.snap(self._spec.snap) if self._spec.snap else None
        return ImageStat(
            pool=self._spec.pool,
            name=self._spec.name,
            snap=self._spec.snap,
            size=view.size,
            object_size=view.object_size,
            features=h.features,
            parent=_parent_info(view.parent),
            protected=bool(snap and snap.protected),
            lockers=tuple(Locker(lk.client, lk.cookie, lk.address) for lk in h.lockers),
            snap_count=len(h.snaps),
        )

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise InvalidRequest("offset and length must not be negative")
        with self._layout.shared():
            return self._layout.read(self._view(self._header()), offset, length)

    def write(self, offset: int, data: bytes | memoryview) -> int:
        data = memoryview(data).cast("B")
        with self._change() as c:
            view = c.header.head
            end = offset + len(data)
            if offset < 0 or end > view.size:
                raise InvalidRequest(
                    f"write of {len(data)} bytes at {offset} is outside {self._spec} "
                    f"(size {view.size})"
                )
            osz = view.object_size
            objects: dict[int, bytes] = {}
            for idx in range(offset // osz, -(-end // osz)):
                start = idx * osz
                lo, hi = max(offset, start), min(end, start + osz, view.size)
                piece = data[lo - offset : hi - offset]
                if lo == start and hi == min(start + osz, view.size):
                    obj = bytes(piece)
                else:  # partial: merge with the current content (copy-up from a parent)
                    merged = bytearray(self._layout.read(view, start, osz))
                    merged[lo - start : hi - start] = piece
                    obj = bytes(merged)
                objects[idx] = obj
            changes = self._layout.new_entries(view, objects, c.pending)
            c.header = c.header.with_head(
                segments=self._layout.update_segments(view, changes, c.pending)
            )
        return len(data)

    def resize(self, size: int) -> None:
        if size < 0:
            raise InvalidRequest("size must not be negative")
        with self._change() as c:
            view = c.header.head
            check_size(size, view.order)
            osz = view.object_size
            parent = view.parent
            changes: dict[int, str | None] = {}
            if size < view.size:
                last = -(-size // osz)
                changes = {i: None for i, _ in self._layout.entries(view) if i >= last}
                if size % osz and self._layout.entry(view, size // osz) is not None:
                    idx = size // osz  # zero the cut object's tail, so growing reads zeros
                    obj = self._layout.read_object(view, idx)[: size - idx * osz]
                    changes[idx] = self._layout.new_entry(view, idx, obj, c.pending)
                if parent is not None:
                    parent = replace(parent, overlap=min(parent.overlap, size))
            shrunk = replace(view, size=size, parent=parent)
            c.header = c.header.with_head(
                size=size,
                parent=parent,
                segments=self._layout.update_segments(shrunk, changes, c.pending),
            )

    # --- snapshots -------------------------------------------------------------------------
    def list_snaps(self) -> list[SnapInfo]:
        with self._layout.shared():
            h = self._header()
        return [SnapInfo(s.id, s.name, s.view.size, s.protected) for s in h.snaps]

    def create_snap(self, name: str) -> None:
        check_name(name, "snapshot")
        with self._change() as c:
            if c.header.snap(name):
                raise AlreadyExists(f"snapshot {self._spec.pool}/{self._spec.name}@{name} exists")
            snap = Snap(c.header.next_snap_id, name, False, c.header.head, c.now)
            c.header = replace(c.header, snaps=(*c.header.snaps, snap), next_snap_id=snap.id + 1)

    def remove_snap(self, name: str) -> None:
        with self._change() as c:
            snap = self._snap(c.header, name)
            if snap.protected:
                raise InUse(f"snapshot {self._spec.name}@{name} is protected: unprotect it first")
            c.header = replace(c.header, snaps=tuple(s for s in c.header.snaps if s is not snap))

    def protect_snap(self, name: str) -> None:
        with self._change() as c:
            snap = self._snap(c.header, name)
            if snap.protected:
                raise Conflict(f"snapshot {self._spec.name}@{name} is already protected")
            c.header = _replace_snap(c.header, replace(snap, protected=True))

    def unprotect_snap(self, name: str) -> None:
        with self._change() as c:
            snap = self._snap(c.header, name)
            if not snap.protected:
                raise InvalidRequest(f"snapshot {self._spec.name}@{name} is not protected")
            kids = self._cluster.children_of(self._spec.pool, self._spec.name, snap.id)
            if kids:
                raise InUse(
                    f"snapshot {self._spec.name}@{name} has {len(kids)} child(ren): "
                    + ", ".join(map(str, kids))
                )
            c.header = _replace_snap(c.header, replace(snap, protected=False))

    def children(self, snap: str) -> list[ChildRef]:
        with self._layout.shared():
            snap_id = self._snap(self._header(), snap).id
            return self._cluster.children_of(self._spec.pool, self._spec.name, snap_id)

    # --- layering --------------------------------------------------------------------------
    def flatten(self) -> None:
        with self._change() as c:
            view = c.header.head
            link = view.parent
            if link is None:
                raise InvalidRequest(f"{self._spec} has no parent to flatten from")
            changes: dict[int, str | None] = {}
            own = dict(self._layout.entries(view))
            for idx, entry in own.items():
                if entry == ZERO:
                    changes[idx] = None  # no parent any more: absent reads as zeros
            parent = self._layout.parent_view(link)
            limit = -(-link.overlap // view.object_size)
            for idx in self._layout.allocated(parent):
                if idx >= limit or idx in own:
                    continue
                ref = self._layout.object_ref(view, idx)
                if ref == CLIPPED:  # only the object cut by the overlap moves data
                    obj = self._layout.read_object(view, idx)[: view.size - idx * view.object_size]
                    ref = self._layout.new_entry(replace(view, parent=None), idx, obj, c.pending)
                changes[idx] = ref
            flat = replace(view, parent=None)
            c.header = c.header.with_head(
                parent=None, segments=self._layout.update_segments(flat, changes, c.pending)
            )

    # --- diff ------------------------------------------------------------------------------
    def diff(
        self, from_snap: str | None = None, *, include_parent: bool = True
    ) -> Iterator[Extent]:
        with self._layout.shared():
            h = self._header()
            to = self._view(h)
            if from_snap is None:
                allocated = self._layout.allocated(to, include_parent=include_parent)
                changed = dict.fromkeys(allocated, True)
            else:
                changed = self._changed_since(self._snap(h, from_snap).view, to)
        yield from _merge(changed, to)

    def _changed_since(self, old: View, new: View) -> dict[int, bool]:
        lay = self._layout
        changed: dict[int, bool] = {}
        for k in range(max(len(old.segments), len(new.segments))):
            a = old.segments[k] if k < len(old.segments) else None
            b = new.segments[k] if k < len(new.segments) else None
            if a == b:
                continue  # shared segment: nothing changed in these 1024 objects
            sa, sb = lay.segment(a), lay.segment(b)
            for idx in sa.keys() | sb.keys():
                if idx < new.num_objects and sa.get(idx) != sb.get(idx):
                    changed[idx] = lay.object_ref(new, idx) is not None
        return changed

    # --- advisory locks --------------------------------------------------------------------
    def lock_exclusive(self, cookie: str) -> None:
        me = self._cluster.client
        with self._change() as c:
            for lk in c.header.lockers:
                if lk.client == me and lk.cookie == cookie:
                    return
                raise Conflict(f"{self._spec} is locked by client.{lk.client} ({lk.cookie})")
            address = f"{socket.gethostname()}/{os.getpid()}"
            c.header = replace(c.header, lockers=(Lock(me, cookie, address),))

    def unlock(self, cookie: str) -> None:
        me = self._cluster.client
        with self._change() as c:
            kept = tuple(lk for lk in c.header.lockers if (lk.client, lk.cookie) != (me, cookie))
            if len(kept) == len(c.header.lockers):
                raise NotFound(f"{self._spec} has no lock {cookie!r} held by client.{me}")
            c.header = replace(c.header, lockers=kept)

    # --- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True


class _Change:
    """One change to a block image: the header read under the lock, and what to commit."""

    def __init__(self, header: Header, pending: Pending) -> None:
        self.before = self.header = header
        self.pending = pending
        self.now = time.time()


def _replace_snap(header: Header, snap: Snap) -> Header:
    return replace(header, snaps=tuple(snap if s.id == snap.id else s for s in header.snaps))


def _parent_info(link: ParentLink | None) -> ParentInfo | None:
    return ParentInfo(link.pool, link.image, link.snap, link.overlap) if link else None


def _merge(changed: dict[int, bool], view: View) -> Iterator[Extent]:
    """Adjacent objects with the same ``exists`` become one extent, clipped to the size."""
    osz = view.object_size
    run: tuple[int, int, bool] | None = None  # first index, last index, exists
    for idx in sorted(changed):
        exists = changed[idx]
        if run and run[1] == idx - 1 and run[2] == exists:
            run = (run[0], idx, exists)
            continue
        if run:
            yield _extent(run, osz, view.size)
        run = (idx, idx, exists)
    if run:
        yield _extent(run, osz, view.size)


def _extent(run: tuple[int, int, bool], osz: int, size: int) -> Extent:
    start = run[0] * osz
    return Extent(start, min((run[1] + 1) * osz, size) - start, run[2])
