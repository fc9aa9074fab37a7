"""The embedded cluster's directory: where each file lives, locks, and reads over views.

::

    DIR/cluster.json                 name, fsid, format
    DIR/auth.json                    clients: key and caps
    DIR/NAME.client.admin.keyring    the admin's keyring, as Ceph writes it
    DIR/gc.lock                      shared by every operation, exclusive for gc and release
    DIR/chunks/ab/<blake3>           object data (trailing zeros stripped, sparse)
    DIR/meta/ab/<blake3>             manifest segments
    DIR/pools/POOL/NAME.json         a block image's header: its one commit point
    DIR/pools/POOL/.locks/NAME       flock that serializes writers of NAME
    DIR/pools/POOL/.children/NAME@SNAPID/CHILDPOOL@CHILD   hint: a clone of NAME@SNAPID
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Final

from ferry.block.embedded.disk import Disk, translate
from ferry.block.embedded.header import (
    OBJECTS_PER_SEGMENT,
    ZERO,
    Header,
    ParentLink,
    Segment,
    View,
    decode_segment,
    encode_segment,
)
from ferry.block.embedded.store import ContentStore, Pending
from ferry.block.zero import is_zero
from ferry.errors import IntegrityError, InvalidRequest, NotFound
from ferry.permissions import FILE_MODE, make_dir

CLIPPED: Final = "clipped"  # object_ref: the object's data is cut by an overlap; no chunk as-is
_SEGMENT_CACHE = 256
_WRITERS = 4  # chunk writers per cluster handle: enough to overlap hashing, writes and fsyncs


_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,199}")


def check_name(name: str, what: str) -> None:
    """Pool, image and snapshot names: never a path, never hidden, at most 200 characters."""
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"bad {what} name {name!r}: use letters, digits, '_', '-', '.' (not first)"
        )


class Layout:
    """Paths, locks and reads of one cluster directory. Checks no caps: callers do."""

    def __init__(self, root: Path, disk: Disk) -> None:
        self.root = root
        self.disk = disk
        self.chunks = ContentStore(root / "chunks", disk, sparse=True)
        self.meta = ContentStore(root / "meta", disk, sparse=False)
        self._segments: dict[str, Segment] = {}
        self._parents: dict[tuple[str, str, int], View] = {}
        self._pool: ThreadPoolExecutor | None = None

    # --- paths -------------------------------------------------------------------------
    def pool_dir(self, pool: str) -> Path:
        check_name(pool, "pool")  # every path below a pool is built here
        return self.root / "pools" / pool

    def header_path(self, pool: str, name: str) -> Path:
        check_name(name, "image")
        return self.pool_dir(pool) / f"{name}.json"

    def children_dir(self, pool: str, name: str, snap_id: int) -> Path:
        return self.pool_dir(pool) / ".children" / f"{name}@{snap_id}"

    def pools(self) -> list[str]:
        return sorted(p.name for p in (self.root / "pools").iterdir() if p.is_dir())

    def image_names(self, pool: str) -> list[str]:
        return sorted(
            e.name[:-5]
            for e in os.scandir(self.pool_dir(pool))
            if e.name.endswith(".json") and not e.name.startswith(".") and ".tmp." not in e.name
        )

    # --- locks -------------------------------------------------------------------------
    @contextmanager
    def _flock(self, path: Path, mode: int) -> Iterator[None]:
        """Hold an flock; an OSError inside becomes ferry's error (the driver's boundary)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise translate(exc, f"cluster {self.root}") from exc
        try:
            fcntl.flock(fd, mode)
            yield
        except OSError as exc:
            raise translate(exc, f"cluster {self.root}") from exc
        finally:
            os.close(fd)

    def shared(self) -> AbstractContextManager[None]:
        """Held by every operation, so gc never deletes what an operation is using."""
        return self._flock(self.root / "gc.lock", fcntl.LOCK_SH)

    def exclusive(self) -> AbstractContextManager[None]:
        return self._flock(self.root / "gc.lock", fcntl.LOCK_EX)

    def image_lock(self, pool: str, name: str) -> AbstractContextManager[None]:
        """Serializes every change to one block image, across processes."""
        locks = self.pool_dir(pool) / ".locks"
        make_dir(locks)
        return self._flock(locks / name, fcntl.LOCK_EX)

    # --- headers -------------------------------------------------------------------------
    def read_header(self, pool: str, name: str) -> Header:
        try:
            raw = self.header_path(pool, name).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"block image {pool}/{name} does not exist") from exc
        except OSError as exc:
            raise translate(exc, f"reading {pool}/{name}") from exc
        try:
            return Header.decode(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"header of {pool}/{name} is unreadable: {exc}") from exc

    def exists(self, pool: str, name: str) -> bool:
        return self.header_path(pool, name).exists()

    def commit(self, pool: str, name: str, header: Header, dirty: Iterable[Path] = ()) -> None:
        """Make ``dirty`` directories durable, then replace the header: the commit point."""
        self.disk.fsync_dirs(dirty)
        self.disk.commit(self.header_path(pool, name), header.encode())

    # --- segments ------------------------------------------------------------------------
    def segment(self, sid: str | None) -> Segment:
        if sid is None:
            return {}
        seg = self._segments.get(sid)
        if seg is None:
            try:
                seg = decode_segment(self.meta.get(sid))
            except FileNotFoundError as exc:
                raise IntegrityError(f"manifest segment {sid} is missing") from exc
            if len(self._segments) >= _SEGMENT_CACHE:
                self._segments.pop(next(iter(self._segments)))
            self._segments[sid] = seg
        return seg

    def entry(self, view: View, idx: int) -> str | None:
        k = idx // OBJECTS_PER_SEGMENT
        if k >= len(view.segments):
            return None
        return self.segment(view.segments[k]).get(idx)

    def entries(self, view: View) -> Iterator[tuple[int, str]]:
        for sid in view.segments:
            yield from self.segment(sid).items()

    def update_segments(
        self, view: View, changes: dict[int, str | None], pending: Pending
    ) -> tuple[str | None, ...]:
        """Apply ``changes`` (None removes an entry) and store the changed segments."""
        segments = list(view.segments)
        wanted = -(-view.num_objects // OBJECTS_PER_SEGMENT)
        segments = segments[:wanted] + [None] * (wanted - len(segments))
        by_segment: dict[int, dict[int, str | None]] = {}
        for idx, value in changes.items():
            by_segment.setdefault(idx // OBJECTS_PER_SEGMENT, {})[idx] = value
        for k, updates in by_segment.items():
            seg = dict(self.segment(segments[k]))
            for idx, value in updates.items():
                if value is None:
                    seg.pop(idx, None)
                else:
                    seg[idx] = value
            segments[k] = self.meta.put(encode_segment(seg), pending) if seg else None
        return tuple(segments)

    # --- parents ---------------------------------------------------------------------------
    def parent_view(self, link: ParentLink) -> View:
        key = (link.pool, link.image, link.snap_id)
        view = self._parents.get(key)
        if view is None:
            snap = self.read_header(link.pool, link.image).snap_by_id(link.snap_id)
            if snap is None:
                raise IntegrityError(
                    f"parent snapshot {link.pool}/{link.image}@{link.snap} is gone"
                )
            # A snapshot's view never changes while it exists, so it can be cached.
            view = self._parents[key] = snap.view
        return view

    # --- reads -----------------------------------------------------------------------------
    def read(self, view: View, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset+length)`` of ``view``, clipped to its size."""
        end = min(offset + length, view.size)
        out = bytearray()
        osz = view.object_size
        pos = offset
        while pos < end:
            idx, within = divmod(pos, osz)
            n = min(osz - within, end - pos)
            out += self._read_in_object(view, idx, within, n)
            pos += n
        return bytes(out)

    def _read_in_object(self, view: View, idx: int, within: int, n: int) -> bytes:
        entry = self.entry(view, idx)
        if entry is None and view.parent is not None:
            start = idx * view.object_size + within
            overlap = view.parent.overlap
            if start < overlap:
                parent = self.parent_view(view.parent)
                data = self.read(parent, start, min(n, overlap - start))
                return data + bytes(n - len(data))
        if entry is None or entry == ZERO:
            return bytes(n)
        data = self.chunks.pread(entry, within, n)
        return data + bytes(n - len(data))

    def read_object(self, view: View, idx: int) -> bytes:
        """One whole object, zero-padded to the object size."""
        osz = view.object_size
        data = self.read(view, idx * osz, osz)
        return data + bytes(osz - len(data))

    def object_ref(self, view: View, idx: int) -> str | None:
        """The chunk that holds object ``idx`` as-is (following parents), None for zeros,
        or CLIPPED when an overlap cuts the object so no stored chunk matches it."""
        entry = self.entry(view, idx)
        if entry is not None:
            return None if entry == ZERO else entry
        link = view.parent
        start = idx * view.object_size
        if link is None or start >= link.overlap:
            return None
        if start + view.object_size > link.overlap:
            return CLIPPED
        return self.object_ref(self.parent_view(link), idx)

    def allocated(self, view: View, *, include_parent: bool = True) -> set[int]:
        """Indexes of objects with data in ``view`` (and its parent's within the overlap)."""
        own = dict(self.entries(view))
        found = {i for i, e in own.items() if e != ZERO and i < view.num_objects}
        if view.parent is not None and include_parent:
            limit = -(-view.parent.overlap // view.object_size)
            osz = view.object_size
            for i in self.allocated(self.parent_view(view.parent)):
                if i >= limit or i in own:
                    continue
                # An object cut by the overlap counts only if its visible part has data.
                if (i + 1) * osz <= view.parent.overlap or not is_zero(self.read_object(view, i)):
                    found.add(i)
        return found

    def new_entries(
        self, view: View, objects: dict[int, bytes], pending: Pending
    ) -> dict[int, str | None]:
        """``new_entry`` for many objects, stored in parallel: hashing and file writes
        release the GIL, so one write call keeps both cores and the disk busy."""
        if len(objects) == 1:
            ((idx, data),) = objects.items()
            return {idx: self.new_entry(view, idx, data, pending)}
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_WRITERS, thread_name_prefix="ferry-chunk")
        futures = {
            i: self._pool.submit(self.new_entry, view, i, d, pending) for i, d in objects.items()
        }
        # Wait for every writer, even after one failed, so ``pending`` lists all they made.
        wait(futures.values())
        return {i: f.result() for i, f in futures.items()}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def new_entry(self, view: View, idx: int, data: bytes, pending: Pending) -> str | None:
        """Store one object's new content; the segment entry to record for it."""
        if is_zero(data):
            shadow = view.parent is not None and idx * view.object_size < view.parent.overlap
            return ZERO if shadow else None
        return self.chunks.put(data.rstrip(b"\0"), pending)


def read_json(path: Path) -> dict[str, object]:
    with open(path, "rb") as f:
        result: dict[str, object] = json.load(f)
        return result
