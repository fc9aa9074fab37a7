"""Conveniences above the block protocol: sizes, sparse import/export, copy, ``ls -l``, ``du``.

They are plain functions over :class:`Cluster` and :class:`BlockImage`, so every driver gets
them for free. Data moves in object-aligned batches; all-zero objects are never written.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ferry.block.protocol import DEFAULT_ORDER, BlockImage, Cluster, Extent, ImageSpec
from ferry.block.zero import zero_runs
from ferry.errors import InvalidRequest, NotFound

BATCH = 32 << 20  # bytes read per step: memory stays flat whatever the image size
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}

Progress = Callable[[int], None]


def parse_size(text: str) -> int:
    """``1G``, ``512M``, ``10GiB``, ``4096`` → bytes (rbd's units are powers of 1024; a bare
    number is bytes, unlike rbd's MiB, so scripts never guess)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*", text.upper())
    if not m:
        raise InvalidRequest(f"cannot parse size {text!r} (use e.g. 4096, 512M, 10G)")
    value = float(m[1]) * _UNITS[m[2]]
    if value != int(value):
        raise InvalidRequest(f"size {text!r} is not a whole number of bytes")
    return int(value)


def format_size(n: int) -> str:
    """As rbd prints sizes: ``1 GiB``, ``1.5 GiB``, ``512 KiB``, ``0 B``."""
    for unit, scale in (
        ("PiB", 1 << 50),
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}".replace(".0 ", " ")
    return f"{n} B"


@dataclass(frozen=True)
class Moved:
    """What a transfer did: ``read`` bytes examined, ``written`` bytes stored."""

    size: int
    read: int
    written: int


Writer = Callable[[int, memoryview], int]


def write_nonzero(write: Writer, offset: int, data: bytes, object_size: int) -> int:
    """Write ``data`` at ``offset`` skipping all-zero objects; return the bytes written.

    Consecutive non-zero objects go down in one ``write(offset, data)`` call (one commit on
    the embedded cluster). Only correct where the destination already reads zeros there.
    """
    view = memoryview(data)
    return sum(
        write(offset + start, view[start:end])
        for start, end, zero in zero_runs(offset, view, object_size)
        if not zero
    )


def _file_data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The file's data regions (holes skipped where the filesystem can tell)."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return  # only a hole is left
            yield pos, size  # no SEEK_DATA here: treat everything as data
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size)
        pos = end


def import_file(
    cluster: Cluster,
    path: Path,
    spec: ImageSpec,
    *,
    order: int = DEFAULT_ORDER,
    progress: Progress | None = None,
) -> Moved:
    """``rbd import``: a new block image from a file, sparse; removed again if it fails."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        cluster.create(spec.pool, spec.name, size, order=order)
        try:
            with cluster.open(spec) as image:
                osz = 1 << order
                read = written = 0
                for start, end in _file_data_ranges(fd, size):
                    pos = start - start % osz
                    while pos < end:
                        n = min(BATCH, end - pos)
                        data = os.pread(fd, n, pos)
                        written += write_nonzero(image.write, pos, data, osz)
                        read += len(data)
                        pos += len(data)
                        if progress:
                            progress(len(data))
        except BaseException:
            cluster.remove(spec.pool, spec.name)
            raise
    finally:
        os.close(fd)
    return Moved(size, read, written)


def export_file(image: BlockImage, path: Path, *, progress: Progress | None = None) -> Moved:
    """``rbd export``: write the block image (or snapshot) to a sparse file."""
    st = image.stat()
    read = written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def pwrite(offset: int, data: memoryview) -> int:
        return os.pwrite(fd, data, offset)

    try:
        os.ftruncate(fd, st.size)
        for ext in image.diff():
            for pos, data in _read_extent(image, ext):
                read += len(data)
                written += write_nonzero(pwrite, pos, data, st.object_size)
                if progress:
                    progress(len(data))
        os.fsync(fd)
    finally:
        os.close(fd)
    return Moved(st.size, read, written)


def _read_extent(image: BlockImage, ext: Extent) -> Iterator[tuple[int, bytes]]:
    pos = ext.offset
    while pos < ext.end:
        data = image.read(pos, min(BATCH, ext.end - pos))
        if not data:
            return
        yield pos, data
        pos += len(data)


def copy_image(
    src: BlockImage,
    dst: Cluster,
    pool: str,
    name: str,
    *,
    progress: Progress | None = None,
) -> Moved:
    """Copy a block image (or snapshot) into ``dst``: only allocated, non-zero data moves.

    The copy is flat (a clone's parent data is copied in). It is removed again if it fails.
    """
    st = src.stat()
    dst.create(pool, name, st.size, order=st.order)
    read = written = 0
    try:
        with dst.open(ImageSpec(pool, name)) as out:
            for ext in src.diff():
                if not ext.exists:
                    continue
                for pos, data in _read_extent(src, ext):
                    read += len(data)
                    written += write_nonzero(out.write, pos, data, st.object_size)
                    if progress:
                        progress(len(data))
    except BaseException:
        dst.remove(pool, name)
        raise
    return Moved(st.size, read, written)


def apply_diff(src: BlockImage, dst: BlockImage, extents: Iterator[Extent]) -> int:
    """Make ``dst`` equal ``src`` over ``extents`` (a diff): data is copied, discarded ranges
    are zeroed. Returns the bytes read from ``src``; nothing outside the extents moves."""
    read = 0
    for ext in extents:
        if ext.exists:
            for pos, data in _read_extent(src, ext):
                read += len(data)
                dst.write(pos, data)
        else:
            for pos in range(ext.offset, ext.end, BATCH):
                dst.write(pos, bytes(min(BATCH, ext.end - pos)))
    return read


@dataclass(frozen=True)
class LsRow:
    name: str
    size: int
    parent: str
    fmt: int
    protected: bool
    lock: str


def ls_long(cluster: Cluster, pool: str) -> list[LsRow]:
    """The rows of ``rbd ls -l``: each block image, then each of its snapshots."""
    rows: list[LsRow] = []
    for name in cluster.list_images(pool):
        try:
            with cluster.open(ImageSpec(pool, name), read_only=True) as image:
                st = image.stat()
                lock = "excl" if st.lockers else ""
                rows.append(LsRow(name, st.size, str(st.parent or ""), 2, False, lock))
                for snap in image.list_snaps():
                    with cluster.open(ImageSpec(pool, name, snap.name)) as at:
                        parent = at.stat().parent
                    rows.append(
                        LsRow(
                            f"{name}@{snap.name}",
                            snap.size,
                            str(parent or ""),
                            2,
                            snap.protected,
                            "",
                        )
                    )
        except NotFound:
            continue  # removed while listing
    return rows


def render_ls(rows: list[LsRow]) -> str:
    """Text like ``rbd ls -l`` prints it."""
    table = [("NAME", "SIZE", "PARENT", "FMT", "PROT", "LOCK")]
    table += [
        (r.name, format_size(r.size), r.parent, str(r.fmt), "yes" if r.protected else "", r.lock)
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(6)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def du(image: BlockImage) -> tuple[int, int]:
    """``rbd du``: (provisioned, used) — used counts only data written into this image."""
    used = sum(e.length for e in image.diff(include_parent=False) if e.exists)
    return image.stat().size, used
