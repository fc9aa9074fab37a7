"""Streaming image data into a store: one pass, hashed on the way, zero objects skipped.

Batches arrive in order. Each one is handed to three single-thread executors: md5, sha512
and the store writer. A single worker runs its tasks in order, so each digest sees the
bytes in order; hashlib and the block drivers release the GIL, so the three overlap on
separate cores. At most ``IN_FLIGHT`` batches are queued, so memory stays flat.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ferry.block import BlockImage
from ferry.errors import FerryError, InvalidRequest
from ferry.images.formats import HEAD, Inspected, inspect
from ferry.images.stores import SNAP, Store

BATCH = 8 << 20  # bytes per batch: two 4 MiB objects
IN_FLIGHT = 2


@dataclass(frozen=True)
class Written:
    """What an upload stored: size, digests, format found in the bytes."""

    size: int
    checksum: str  # md5 hex, Glance's ``checksum``
    os_hash_value: str  # sha512 hex
    inspected: Inspected


class ImageWriter:
    """Writes one image's data into ``images/<id>`` of a store, then snapshots ``snap``.

    ``write`` takes the stream in order; ``finish`` snapshots and protects; ``abort`` (or
    a failure anywhere) removes the block image, so nothing is left behind.
    """

    def __init__(self, store: Store, image_id: str, size_hint: int | None) -> None:
        self.store = store
        self.image_id = image_id
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha = hashlib.sha512()
        self._pools = [ThreadPoolExecutor(1, thread_name_prefix=f"upload-{n}") for n in range(3)]
        self._pending: deque[list[Future[object]]] = deque()
        self._size = 0
        self._capacity = size_hint or 0
        self._head = b""
        self._image: BlockImage | None = None
        self.inspected: Inspected | None = None
        spec = store.spec(image_id, None)
        store.cluster.create(spec.pool, spec.name, self._capacity)
        self._image = store.open(spec)

    @property
    def size(self) -> int:
        return self._size

    def peek(self, data: bytes | memoryview) -> Inspected | None:
        """Collect the stream's head; once there is enough, what format it is."""
        if self.inspected is None and len(self._head) < HEAD:
            self._head += bytes(data[: HEAD - len(self._head)])
        if self.inspected is None and len(self._head) >= HEAD:
            self.inspected = inspect(self._head)
        return self.inspected

    def write(self, data: bytes | memoryview) -> None:
        """Queue one batch: hashed twice and written, overlapping; waits if too much queued."""
        self.peek(data)
        pos = self._size
        self._size += len(data)
        if self._size > self._capacity:  # no size was given: grow ahead, trim at the end
            self._capacity = max(self._size, 2 * self._capacity)
            self._wait_all()
            self._blocks().resize(self._capacity)
        md5, sha, out = self._pools
        self._pending.append(
            [
                md5.submit(self._md5.update, data),
                sha.submit(self._sha.update, data),
                out.submit(self._blocks().write, pos, data),
            ]
        )
        while len(self._pending) > IN_FLIGHT:
            for f in self._pending.popleft():
                f.result()

    def finish(self, expected_size: int | None) -> Written:
        """Wait for every batch, check the size, snapshot and protect ``snap``."""
        self._wait_all()
        if self.inspected is None:
            self.inspected = inspect(self._head)
        if expected_size is not None and expected_size != self._size:
            raise InvalidRequest(
                f"the image data is {self._size} bytes but its size was given as {expected_size}"
            )
        image = self._blocks()
        if self._capacity != self._size:
            image.resize(self._size)
        image.create_snap(SNAP)
        image.protect_snap(SNAP)
        self._close()
        return Written(self._size, self._md5.hexdigest(), self._sha.hexdigest(), self.inspected)

    def abort(self) -> None:
        """Drop everything written so far; never raises (the caller is handling a failure)."""
        for batch in self._pending:
            for f in batch:
                f.cancel()
        with contextlib.suppress(Exception):  # the first failure is already being reported
            self._wait_all()
        self._close()
        with contextlib.suppress(FerryError):
            self.store.delete(self.image_id)

    def _blocks(self) -> BlockImage:
        if self._image is None:
            raise InvalidRequest("the upload is closed")
        return self._image

    def _wait_all(self) -> None:
        while self._pending:
            for f in self._pending.popleft():
                f.result()

    def _close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True)
        if self._image is not None:
            self._image.close()
            self._image = None
