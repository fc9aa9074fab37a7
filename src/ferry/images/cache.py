"""A site's image cache (Glance's ``image_cache_dir``): whole copies of active images on the
site's own disk, so a download at an edge whose data lives in another site's store, or at a
URL, is read locally after the first time.

Layout of the directory (0700, every file 0600)::

    queue/<image-id>        an empty marker: the image waits for the filler
    data/<image-id>         a cached image, exactly ``size`` bytes; atime is last_accessed
    data/<image-id>.part    a fill in progress

Write order of a fill: read the stores into ``.part`` (streaming, hashed), fsync it, check
size and hash, evict least recently used images until it fits, ``os.replace`` onto
``<image-id>`` (the commit point), fsync ``data/``, remove the queue marker. A crash before
the replace leaves a ``.part`` that the next start removes, and the marker, so the image is
filled again; after it, at worst a marker for an image already cached (dropped next pass).
Hits are counted in memory: they start at 0 with each server process.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from ferry.cacheconf import CacheConfig
from ferry.catalog import ImageRecord
from ferry.errors import Cancelled, IntegrityError, InvalidRequest, NotFound
from ferry.images.imports import Imports
from ferry.images.locations import http_data
from ferry.images.service import ImageService
from ferry.images.transfer import read_range
from ferry.permissions import FILE_MODE, make_dir

log = logging.getLogger(__name__)
PART = ".part"
READ_CHUNK = 1 << 20
SWEEP_SECONDS = 30.0  # how often the filler looks for deleted images to drop
SAFE_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")  # image ids become file names
Target = Literal["cache", "queue", "both"]


@dataclass(frozen=True)
class CachedImage:
    """One entry of ``GET /v2/cache``'s ``cached_images``, with Glance's field names."""

    image_id: str
    hits: int
    last_accessed: float
    last_modified: float
    size: int


class ImageCache:
    """The cache of one site: queue, list, evict, serve; ``start`` runs the filler thread."""

    def __init__(
        self,
        config: CacheConfig,
        site: str,
        images: ImageService,
        imports: Imports,
        poll_seconds: float = 1.0,
    ) -> None:
        self.config = config
        self.enabled = config.enabled
        self.directory = config.directory or imports.staging.parent / f"ferry-cache-{site}"
        self.data, self.queue_dir = self.directory / "data", self.directory / "queue"
        self.images, self.imports = images, imports
        self.poll_seconds = poll_seconds
        self._hits: dict[str, int] = {}
        self._lock = threading.Lock()  # hits, and eviction against deletes
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._swept = 0.0
        if self.enabled:
            for path in (self.directory, self.data, self.queue_dir):
                make_dir(path, parents=True)
            for part in self.data.glob(f"*{PART}"):  # a fill a crash cut off
                log.info("image cache: removing the unfinished fill %s", part)
                part.unlink(missing_ok=True)

    # --- what the API asks -----------------------------------------------------------------
    def require(self) -> None:
        """NotFound when the site runs without a cache, as Glance without image_cache_dir."""
        if not self.enabled:
            raise NotFound("Caching via API is not supported at this site.")

    def cached(self) -> list[CachedImage]:
        entries = []
        for path in self.data.iterdir():
            if path.name.endswith(PART):
                continue
            with contextlib.suppress(FileNotFoundError):  # evicted while we list
                st = path.stat()
                hits = self._hits.get(path.name, 0)
                entries.append(CachedImage(path.name, hits, st.st_atime, st.st_mtime, st.st_size))
        return sorted(entries, key=lambda e: e.last_modified)

    def queued(self) -> list[str]:
        """Queued image ids, oldest first (the order the filler takes them)."""
        paths = []
        for path in self.queue_dir.iterdir():
            with contextlib.suppress(FileNotFoundError):
                paths.append((path.stat().st_mtime, path.name))
        return [name for _, name in sorted(paths)]

    def queue(self, image_id: str) -> None:
        """Queue an active image for the filler (NotFound, or InvalidRequest if not active)."""
        record = self.images.get(self._safe(image_id))
        if record.status != "active":
            raise InvalidRequest("Only images with status active can be targeted for queueing")
        if not (self.data / image_id).exists():
            os.close(os.open(self.queue_dir / image_id, os.O_WRONLY | os.O_CREAT, FILE_MODE))
            self._wake.set()

    def delete(self, image_id: str) -> None:
        """Drop the image from the cache and the queue."""
        name = self._safe(image_id)
        if not (self.queue_dir / name).exists() and not (self.data / name).exists():
            self.images.get(name)  # NotFound for an image neither known nor cached
        self.forget(name)

    def forget(self, image_id: str) -> None:
        """Drop a (deleted) image from the cache and the queue, if it is there."""
        if not self.enabled or not SAFE_ID.match(image_id):
            return
        with self._lock:
            (self.queue_dir / image_id).unlink(missing_ok=True)
            (self.data / image_id).unlink(missing_ok=True)
            self._hits.pop(image_id, None)

    def clear(self, target: Target) -> None:
        if target in ("queue", "both"):
            for path in self.queue_dir.iterdir():
                path.unlink(missing_ok=True)
        if target in ("cache", "both"):
            for entry in self.cached():
                self.forget(entry.image_id)

    def open(self, record: ImageRecord) -> BinaryIO | None:
        """The cached data of an active image, opened, counting a hit; None if not cached."""
        if not self.enabled or record.status != "active" or not SAFE_ID.match(record.id):
            return None
        path = self.data / record.id
        try:
            f = path.open("rb")
        except FileNotFoundError:
            return None
        if os.fstat(f.fileno()).st_size != (record.size or 0):  # not this image's data
            f.close()
            return None
        with self._lock:
            self._hits[record.id] = self._hits.get(record.id, 0) + 1
        now = time.time()
        with contextlib.suppress(OSError):  # set explicitly: mounts may be noatime
            os.utime(path, (now, os.stat(path).st_mtime))
        return f

    # --- the filler --------------------------------------------------------------------------
    def start(self) -> None:
        if not self.enabled:
            return
        self._thread = threading.Thread(target=self._run, name="image-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.fill_queued()
            except Exception:  # the thread must outlive a bad pass; the next one retries
                log.exception("image cache: a fill pass failed")
            self._wake.wait(self.poll_seconds)

    def fill_queued(self) -> None:
        """Fill every queued image; drop from the queue those that are gone or not active."""
        for image_id in self.queued():
            if self._stop.is_set():
                return
            marker = self.queue_dir / image_id
            try:
                record = self.images.get(image_id)
                if record.status == "active" and not (self.data / image_id).exists():
                    self._fill(record)
            except Exception as exc:  # unreachable store, wrong data, full disk: re-queue later
                if self._stop.is_set():
                    return  # cut off by shutdown: the marker stays, the next start fills it
                log.warning("image cache: cannot cache image %s: %s", image_id, exc)
            marker.unlink(missing_ok=True)
        if time.monotonic() - self._swept >= SWEEP_SECONDS:
            self._forget_deleted()
            self._swept = time.monotonic()

    def _fill(self, record: ImageRecord) -> None:
        size = record.size or 0
        if size > self.config.max_size:
            raise InvalidRequest(f"{size} bytes is more than the cache's {self.config.max_size}")
        part = self.data / f"{record.id}{PART}"
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as f:
                digest = self._copy(record, f)
                f.flush()
                os.fsync(f.fileno())
                written = f.tell()
            if written != size:
                raise IntegrityError(f"read {written} bytes of image {record.id}, not {size}")
            if record.os_hash_value and digest != record.os_hash_value:
                raise IntegrityError(f"image {record.id}'s data does not match its hash")
            with self._lock:
                self._make_room(size)
                os.replace(part, self.data / record.id)
            _fsync_dir(self.data)
        finally:
            part.unlink(missing_ok=True)
        log.info("image cache: cached image %s (%d bytes)", record.id, size)

    def _copy(self, record: ImageRecord, f: BinaryIO) -> str | None:
        """Stream the image's data from its store into ``f``; its hash (``os_hash_algo``)."""
        hasher = hashlib.new(record.os_hash_algo) if record.os_hash_algo else None
        for chunk in self._source(record):
            if self._stop.is_set():
                raise Cancelled("the server is stopping")
            f.write(chunk)
            if hasher is not None:
                hasher.update(chunk)
        return hasher.hexdigest() if hasher is not None else None

    def _source(self, record: ImageRecord) -> Iterator[bytes | memoryview]:
        record, store = self.images.data_store(record.id)
        size = record.size or 0
        if store.config.type == "http":  # the data is at its URL
            return http_data(self.imports, record, store, 0, size)
        return read_range(store.open_snap(record.id), 0, size)

    def _make_room(self, size: int) -> None:
        """Evict least recently used images until ``size`` more bytes fit (under the lock)."""
        entries = sorted(self.cached(), key=lambda e: e.last_accessed)
        total = sum(e.size for e in entries)
        for entry in entries:
            if total + size <= self.config.max_size:
                break
            log.info("image cache: evicting image %s (%d bytes)", entry.image_id, entry.size)
            (self.data / entry.image_id).unlink(missing_ok=True)
            self._hits.pop(entry.image_id, None)
            total -= entry.size

    def _forget_deleted(self) -> None:
        """Remove cached images whose record is gone or deleted (at any site of the catalogue)."""
        for entry in self.cached():
            try:
                gone = self.images.get(entry.image_id).status in ("deleted", "killed")
            except NotFound:
                gone = True
            if gone:
                self.forget(entry.image_id)

    def _safe(self, image_id: str) -> str:
        self.require()
        if not SAFE_ID.match(image_id):
            raise NotFound(f"Image {image_id} not found.")
        return image_id


def read_cached(f: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of an opened cache file, in chunks; closes it at the end."""
    with f:
        f.seek(start)
        left = end - start
        while left > 0:
            chunk = f.read(min(READ_CHUNK, left))
            if not chunk:
                raise IntegrityError("a cached image file ended early")
            left -= len(chunk)
            yield chunk


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
