"""``check`` (verify every chunk and reference; report, never repair) and ``gc``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ferry.block.embedded.disk import TMP_MARK
from ferry.block.embedded.header import OBJECTS_PER_SEGMENT, ZERO, Header, View, decode_segment
from ferry.block.embedded.layout import Layout
from ferry.block.embedded.store import ContentStore, digest
from ferry.errors import FerryError


@dataclass
class CheckReport:
    """What ``check`` found: ``errors`` are damage; ``notes`` are garbage that gc removes."""

    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    images: int = 0
    chunks: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class GcReport:
    chunks: int = 0
    segments: int = 0
    other: int = 0
    bytes_freed: int = 0


@dataclass
class _Refs:
    headers: dict[tuple[str, str], Header] = field(default_factory=dict)
    chunks: dict[str, str] = field(default_factory=dict)  # chunk id -> first user, for reports
    segments: set[str] = field(default_factory=set)


def check(layout: Layout) -> CheckReport:
    """Verify headers, parents, segments and every chunk's hash. Changes nothing."""
    report = CheckReport()
    with layout.shared():
        refs = _collect(layout, report)
        report.images = len(refs.headers)
        for (pool, name), header in refs.headers.items():
            _check_parents(refs, pool, name, header, report)
        for cid in layout.chunks.ids():
            report.chunks += 1
            user = refs.chunks.pop(cid, None)
            if not _hash_ok(layout.chunks, cid):
                where = f"used by {user}" if user else "unreferenced"
                (report.errors if user else report.notes).append(
                    f"chunk {cid} does not match its hash ({where})"
                )
            elif user is None:
                report.notes.append(f"chunk {cid} is unreferenced (gc removes it)")
        report.errors.extend(
            f"chunk {cid} is missing (used by {user})" for cid, user in refs.chunks.items()
        )
        unused = sum(1 for s in layout.meta.ids() if s not in refs.segments)
        if unused:
            report.notes.append(f"{unused} manifest segment(s) unreferenced (gc removes them)")
        temps = [*_temp_files(layout)]
        if temps:
            report.notes.append(f"{len(temps)} temporary file(s) left by interrupted writes")
    return report


def gc(layout: Layout) -> GcReport:
    """Remove chunks, segments, temporaries and hints that nothing references."""
    report = GcReport()
    with layout.exclusive():  # no operation runs meanwhile, so "unreferenced" stays true
        refs = _collect(layout, CheckReport())
        for store, kept, attr in (
            (layout.chunks, refs.chunks.keys(), "chunks"),
            (layout.meta, refs.segments, "segments"),
        ):
            for cid in [c for c in store.ids() if c not in kept]:
                report.bytes_freed += store.allocated(cid)
                store.path(cid).unlink()
                setattr(report, attr, getattr(report, attr) + 1)
        stale = [*_temp_files(layout), *_stale_hints(layout, refs)]
        for path in stale:
            path.unlink(missing_ok=True)
        report.other = len(stale)
    return report


def release(
    layout: Layout,
    created: Iterable[Path] = (),
    removed: Iterable[View] = (),
    image: tuple[str, str] | None = None,
) -> None:
    """Delete what a failed or removing operation leaves behind, and nothing any header uses.

    ``created`` are chunk and segment files a failed operation made; ``removed`` the views
    of a block image just removed, whose segments and chunks are candidates too; ``image``
    names a block image whose lock file goes if it does not exist. Chunks are shared (dedup),
    so each candidate is checked against every header, under gc's exclusive lock: no
    operation then holds an uncommitted reference (every one holds the lock shared from
    before it looks a chunk up until after its commit), and none waits on an image lock.
    Called with no lock held: taking the exclusive lock while holding the shared one, or an
    image lock another thread waits on while holding the shared one, would deadlock.
    """
    candidates = set(created)
    removed = list(removed)
    if not candidates and not removed and image is None:
        return
    with layout.exclusive():
        for view in removed:
            for sid in filter(None, view.segments):
                candidates.add(layout.meta.path(sid))
                candidates.update(layout.chunks.path(c) for c in _chunk_ids(layout, sid))
        if image is not None and not layout.exists(*image):
            (layout.pool_dir(image[0]) / ".locks" / image[1]).unlink(missing_ok=True)
        if candidates and _spare_referenced(layout, candidates):
            for path in candidates:
                path.unlink(missing_ok=True)


def _chunk_ids(layout: Layout, sid: str) -> set[str]:
    try:
        return set(layout.segment(sid).values()) - {ZERO}
    except FerryError:  # already collected: nothing of it is left to release
        return set()


def _spare_referenced(layout: Layout, candidates: set[Path]) -> bool:
    """Drop from ``candidates`` every file a header references; False if none is left, or
    if a header or segment cannot be read (nothing may be deleted: it may be used there)."""
    seen: set[str] = set()
    try:
        for pool in layout.pools():
            for name in layout.image_names(pool):
                for view in layout.read_header(pool, name).views():
                    for sid in filter(None, view.segments):
                        if sid in seen:
                            continue
                        seen.add(sid)
                        candidates.discard(layout.meta.path(sid))
                        candidates.difference_update(
                            layout.chunks.path(c) for c in layout.segment(sid).values()
                        )
                        if not candidates:
                            return False
    except (FerryError, OSError, ValueError):
        return False
    return True


def _collect(layout: Layout, report: CheckReport) -> _Refs:
    refs = _Refs()
    for pool in layout.pools():
        for name in layout.image_names(pool):
            try:
                header = layout.read_header(pool, name)
            except FerryError as exc:
                report.errors.append(str(exc))
                continue
            refs.headers[(pool, name)] = header
            for view in header.views():
                for k, sid in enumerate(view.segments):
                    if sid is None or sid in refs.segments:
                        continue
                    refs.segments.add(sid)
                    _check_segment(layout, f"{pool}/{name}", k, sid, refs, report)
    return refs


def _check_segment(
    layout: Layout, user: str, k: int, sid: str, refs: _Refs, report: CheckReport
) -> None:
    try:
        raw = layout.meta.get(sid)
    except FileNotFoundError:
        report.errors.append(f"manifest segment {sid} is missing (used by {user})")
        return
    if digest(raw) != sid:
        report.errors.append(f"manifest segment {sid} does not match its hash (used by {user})")
        return
    for idx, cid in decode_segment(raw).items():
        if idx // OBJECTS_PER_SEGMENT != k:
            report.errors.append(f"manifest segment {sid} holds object {idx} out of place")
        if cid != ZERO:
            refs.chunks.setdefault(cid, f"{user} object {idx}")


def _check_parents(refs: _Refs, pool: str, name: str, header: Header, report: CheckReport) -> None:
    for view in header.views():
        link = view.parent
        if link is None:
            continue
        parent = refs.headers.get((link.pool, link.image))
        snap = parent.snap_by_id(link.snap_id) if parent else None
        if snap is None:
            report.errors.append(
                f"{pool}/{name}: parent {link.pool}/{link.image}@{link.snap} is gone"
            )
        elif not snap.protected:
            report.errors.append(f"{pool}/{name}: parent snapshot {link.snap} is not protected")
        elif link.overlap > snap.view.size:
            report.errors.append(f"{pool}/{name}: overlap is larger than the parent snapshot")


def _hash_ok(store: ContentStore, cid: str) -> bool:
    try:
        return digest(store.get(cid)) == cid
    except OSError:
        return False


def _temp_files(layout: Layout) -> list[Path]:
    found = [*layout.chunks.temp_files(), *layout.meta.temp_files()]
    for root, _dirs, files in os.walk(layout.root / "pools"):
        found.extend(Path(root, f) for f in files if TMP_MARK in f)
    found.extend(p for p in layout.root.iterdir() if TMP_MARK in p.name)
    return found


def _stale_hints(layout: Layout, refs: _Refs) -> list[Path]:
    """Children hints whose child no longer points at the parent, and orphan lock files."""
    live = {
        (*parent, cpool, cname)
        for (cpool, cname), h in refs.headers.items()
        for parent in h.parent_snaps()
    }
    stale = []
    for pool in layout.pools():
        hints = layout.pool_dir(pool) / ".children"
        for d in hints.iterdir() if hints.is_dir() else ():
            image, _, snap_id = d.name.rpartition("@")
            for mark in d.iterdir():
                cpool, _, cname = mark.name.partition("@")
                if (pool, image, int(snap_id), cpool, cname) not in live:
                    stale.append(mark)
        locks = layout.pool_dir(pool) / ".locks"
        for lock in locks.iterdir() if locks.is_dir() else ():
            if (pool, lock.name) not in refs.headers:
                stale.append(lock)
    return stale
