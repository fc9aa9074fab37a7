"""The transfer engine: one read of a source image, written to N destinations at once.

What moves: the source's allocated extents only (``diff`` from nothing), and of those only
the ``GRAIN``-sized pieces that are not all zero; holes and zero runs are never written, since
a fresh destination reads zeros there. Every destination gets the same buffers, each on its own
writer thread, so two destinations cost one read and about the time of the slower write.

Verification: sha512 runs over the whole logical image (holes fed as zeros) on its own
thread, in order. The bytes each destination received are exactly the bytes hashed, so a
digest equal to the image's ``os_hash_value`` vouches for every destination; a different
one fails them all and the caller activates none.

Resumption: the image is walked in windows of ``WINDOW`` bytes. After a window every live
destination has acknowledged its writes (durable, on both drivers), and ``on_window(end)``
records the checkpoint. A job resumed from offset ``start`` rehashes ``[0, start)`` from the
source (read, never re-sent) and writes from ``start`` on. A destination that fails is
dropped (``failed``) and the others go on.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ferry.block import BlockImage
from ferry.block.protocol import Extent
from ferry.block.zero import zero_runs
from ferry.errors import FerryError, IntegrityError

WINDOW = 64 << 20  # checkpoint granularity
BATCH = 8 << 20  # one read
IN_FLIGHT = 2  # batches queued behind the one being read
# Zero detection grain: a fresh destination reads zeros, so zero runs this long are skipped
# even inside an object (Ceph would otherwise store and send them).
GRAIN = 64 << 10
ZEROS = memoryview(bytes(BATCH))  # a hole's bytes, BATCH at most


@dataclass
class Outcome:
    """What a transfer did, per destination."""

    read: int = 0  # bytes read from the source (rehashing a resumed prefix included)
    written: dict[str, int] = field(default_factory=dict)  # bytes written, per store
    failed: dict[str, FerryError] = field(default_factory=dict)  # why a store dropped out
    sha512: str = ""


def transfer(
    source: BlockImage,
    destinations: Mapping[str, BlockImage],
    *,
    expected_sha512: str | None,
    start: int = 0,
    on_window: Callable[[int], None] | None = None,
) -> Outcome:
    """Copy ``source`` (an image at its snapshot) into every destination from ``start`` on.

    Raises IntegrityError if the bytes do not hash to ``expected_sha512``, and whatever
    reading the source raises; a destination's failure only drops that destination.
    """
    st = source.stat()
    out = Outcome(written=dict.fromkeys(destinations, 0))
    live = dict(destinations)
    sha = hashlib.sha512()
    pools = {name: ThreadPoolExecutor(1, thread_name_prefix=f"to-{name}") for name in live}
    hasher = ThreadPoolExecutor(1, thread_name_prefix="sha512")
    pending: deque[tuple[Future[None], dict[str, Future[int]]]] = deque()

    def settle(batch: tuple[Future[None], dict[str, Future[int]]]) -> None:
        hashed, writes = batch
        hashed.result()
        for name, fut in writes.items():
            try:
                out.written[name] += fut.result()
            except FerryError as exc:
                out.failed.setdefault(name, exc)
                live.pop(name, None)

    def submit(pos: int, data: memoryview, write: bool) -> None:
        writes: dict[str, Future[int]] = {}
        if write:
            runs = [(a, b) for a, b, zero in zero_runs(pos, data, GRAIN) if not zero]
            for name, image in live.items():
                writes[name] = pools[name].submit(_write_runs, image, pos, data, runs)
        pending.append((hasher.submit(sha.update, data), writes))
        while len(pending) > IN_FLIGHT:
            settle(pending.popleft())

    try:
        extents = [e for e in source.diff() if e.exists]
        for window in range(0, st.size, WINDOW):
            end = min(st.size, window + WINDOW)
            write = end > start
            if not write and expected_sha512 is None:
                continue
            for pos, length, data in pieces(extents, window, end):
                if data:
                    chunk = memoryview(source.read(pos, length))
                    out.read += len(chunk)
                    submit(pos, chunk, write and pos + length > start)
                else:
                    submit(pos, ZEROS[:length], False)
            while pending:
                settle(pending.popleft())
            if write and on_window is not None:
                on_window(end)
            if write and not live:
                break  # every destination failed: nothing left to write or verify for
    finally:
        for pool in (*pools.values(), hasher):
            pool.shutdown(wait=True, cancel_futures=True)
    out.sha512 = sha.hexdigest()
    if expected_sha512 is not None and live and out.sha512 != expected_sha512:
        raise IntegrityError(
            f"the copied bytes hash to sha512 {out.sha512[:16]}..., "
            f"not the image's {expected_sha512[:16]}...: the source is damaged"
        )
    return out


def _write_runs(image: BlockImage, pos: int, data: memoryview, runs: list[tuple[int, int]]) -> int:
    return sum(image.write(pos + a, data[a:b]) for a, b in runs)


def read_range(image: BlockImage, start: int, end: int) -> Iterator[bytes | memoryview]:
    """The bytes of ``[start, end)`` of ``image`` (closed at the end): allocated extents are
    read, holes come as zeros without a read."""
    with image:
        extents = [e for e in image.diff() if e.exists]
        for pos, length, has_data in pieces(extents, start, end):
            yield image.read(pos, length) if has_data else ZEROS[:length]


def pieces(extents: list[Extent], start: int, end: int) -> Iterator[tuple[int, int, bool]]:
    """``(offset, length, has_data)`` covering ``[start, end)`` in order, at most BATCH long:
    data where an extent lies, holes between. ``extents`` are sorted and disjoint (a diff),
    so the window's first one is found by bisection, not by a scan from the image's start."""
    pos = start
    first = bisect.bisect_right(extents, start, key=lambda e: e.end)
    for i in range(first, len(extents)):
        ext = extents[i]
        if ext.offset >= end:
            break
        if ext.offset > pos:
            yield from _split(pos, ext.offset, has_data=False)
            pos = ext.offset
        stop = min(ext.end, end)
        yield from _split(pos, stop, has_data=True)
        pos = stop
    yield from _split(pos, end, has_data=False)


def _split(start: int, end: int, *, has_data: bool) -> Iterator[tuple[int, int, bool]]:
    for pos in range(start, end, BATCH):
        yield pos, min(BATCH, end - pos), has_data
