"""Glance's interoperable import (glance-direct, web-download, copy-image) as durable jobs.

``POST /v2/images/{id}/import`` only checks the request and records a task; the site's
workers do the work. A task row is a job: a worker claims it with a lease and renews the
lease while it works (a heartbeat thread), recording a checkpoint after every window of the
copy. A worker that dies stops renewing; once the lease lapses another worker of the site
claims the task and continues from the checkpoint. A worker that finds its lease taken
stops without touching anything.

Each import has two phases:

``ingest`` (web-download, glance-direct)
    The bytes come from the URL or the staged file into the first requested store through
    the same writer as an upload (hashed once, zero objects skipped). With conversion on,
    anything that is not raw is first checked for references outside itself and converted
    by ``qemu-img`` in the staging directory. The image is ``active`` once the first store
    holds it, as in Glance. A takeover during ingest starts the ingest again.
``copy`` (every method)
    The transfer engine copies the image from a store that holds it into every remaining
    requested store at once (one read, sparse, sha512-verified), and each store gets its
    location when the whole image is verified. A takeover resumes from the checkpoint.

The image's bookkeeping properties follow Glance: ``os_glance_import_task`` while a task
runs, ``os_glance_importing_to_stores`` shrinking as stores finish, ``os_glance_failed_import``
naming the stores that failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from ferry import failpoints
from ferry.block import BlockImage
from ferry.catalog import ImageRecord, TaskRecord
from ferry.catalog.records import utcnow
from ferry.config import ImportConfig
from ferry.errors import (
    AlreadyExists,
    BackendUnavailable,
    Cancelled,
    Conflict,
    FerryError,
    Forbidden,
    ImportBusy,
    InvalidRequest,
    NotFound,
)
from ferry.images import convert, locations
from ferry.images.fetch import FetchPolicy, check_url, open_url
from ferry.images.formats import HEAD, check_declared, inspect
from ferry.images.glance_download import INPUT, METHOD, Origin
from ferry.images.service import ImageService
from ferry.images.stores import SNAP, Store
from ferry.images.transfer import transfer
from ferry.images.upload import BATCH, ImageWriter
from ferry.permissions import make_dir

log = logging.getLogger(__name__)

METHODS = ("glance-direct", "web-download", "copy-image", METHOD)
TASK_TYPE = "api_image_import"
TASK_EXPIRY = timedelta(hours=48)  # Glance keeps finished tasks this long
IMPORT_TASK = "os_glance_import_task"
IMPORTING = "os_glance_importing_to_stores"
FAILED = "os_glance_failed_import"
# The status an image waits for its ingest in (copy-image needs an active image instead).
WAITING = {"web-download": "queued", "glance-direct": "uploading", METHOD: "queued"}


@dataclass(frozen=True)
class ImportRequest:
    """The body of ``POST /v2/images/{id}/import``, checked."""

    method: str
    uri: str | None
    stores: tuple[str, ...] | None  # None: not given
    all_stores: bool
    must_succeed: bool

    @classmethod
    def parse(cls, body: object) -> ImportRequest:
        if not isinstance(body, Mapping) or not isinstance(body.get("method"), Mapping):
            raise InvalidRequest("Import request requires a 'method' object")
        method = body["method"].get("name")
        if method not in METHODS:
            raise InvalidRequest(f"Unknown import method name '{method}'.")
        uri = body["method"].get("uri")
        if method == "web-download" and not isinstance(uri, str):
            raise InvalidRequest("URI for web-download does not pass filtering: no 'uri' given")
        stores = body.get("stores")
        if stores is not None and not (
            isinstance(stores, list) and all(isinstance(s, str) for s in stores)
        ):
            raise InvalidRequest("'stores' must be a list of store identifiers")
        return cls(
            method=method,
            uri=uri if method == "web-download" else None,
            stores=tuple(stores) if stores is not None else None,
            all_stores=bool(body.get("all_stores", False)),
            must_succeed=bool(body.get("all_stores_must_succeed", True)),
        )


class LostLease(Conflict):
    """Another worker took this job over: stop, and leave everything to it."""


class Stopping(LostLease):
    """The server is stopping: leave the job at its checkpoint for the next worker."""


class Imports:
    """The imports of one site: requests from its API, jobs for its workers."""

    def __init__(
        self,
        service: ImageService,
        site: str,
        config: ImportConfig,
        max_image_size: int = 1 << 40,
        regions: frozenset[str] = frozenset(),
    ) -> None:
        self.service = service
        self.regions = regions  # those a glance-download may name (glance_download.regions)
        self.max_image_size = max_image_size  # a converted image's virtual size, at most
        self.site = site
        self.config = config
        self.staging = config.staging or Path(tempfile.gettempdir()) / f"ferry-staging-{site}"
        self.lease = timedelta(seconds=config.lease_seconds)
        self.stopping = threading.Event()  # set: jobs stop at their next checkpoint
        self.policy = FetchPolicy(
            allow_hosts=frozenset(config.allow_hosts), max_size=config.max_size
        )

    # --- requests ------------------------------------------------------------------------
    def request(
        self,
        image_id: str,
        body: Mapping[str, Any],
        request_id: str | None = None,
        source: Mapping[str, str] | None = None,
    ) -> TaskRecord:
        """Check an import request as Glance does, record its task, mark the image.

        ``source``: a glance-download's, as ``glance_download.check`` found it."""
        req = ImportRequest.parse(body)
        record = self.service.get(image_id)
        targets = self._targets(record, req)
        more = {INPUT: dict(source or {})} if req.method == METHOD else {}
        task = TaskRecord(
            id=str(uuid.uuid4()),
            type=TASK_TYPE,
            owner=record.owner,
            image_id=image_id,
            request_id=request_id,
            user_id=self.service.owner,
            input={
                "image_id": image_id,
                "import_req": dict(body),
                "backend": list(targets),
                **more,
            },
            site=self.site,
        )
        task = self.service.catalog.create_task(task, sole_for_image=True)
        status = WAITING.get(req.method)
        try:
            self.service.catalog.update_image(
                image_id,
                expect_status=(status,) if status else None,
                fields={"status": "importing"} if status else {},
                set_properties={
                    IMPORT_TASK: task.id,
                    IMPORTING: ",".join(sorted(targets)),
                    FAILED: "",
                },
            )
        except FerryError as exc:
            self.service.catalog.update_task(task.id, status="failure", message=str(exc))
            raise
        return task

    def _targets(self, record: ImageRecord, req: ImportRequest) -> tuple[str, ...]:
        stores = self.service.stores
        if req.all_stores:
            wanted = [s.id for s in stores if not s.config.read_only]
        else:
            wanted = list(req.stores or (stores.default.id,))
        for store_id in wanted:
            store = stores.get(store_id)
            if store is None:
                raise Conflict(f"Store for identifier {store_id} not found")
            if store.config.read_only:
                raise Conflict(f"Store {store_id} is read-only")
        if req.method == "copy-image":
            if record.status != "active":
                raise Conflict("Only images with status active can be targeted for copying")
            held = set(record.stores)
            if req.all_stores:
                wanted = [s for s in wanted if s not in held]
            for store_id in wanted:
                if store_id in held:
                    raise InvalidRequest(f"Image is already present at store '{store_id}'")
        elif req.method == "glance-direct" and record.status != "uploading":
            raise Conflict("Image needs to be staged before 'glance-direct' method can be used")
        elif req.method == METHOD and record.status != "queued":
            raise Conflict(
                f"Image status transition from {record.status} to importing is not allowed"
            )
        elif req.method == "web-download":
            if record.status != "queued":
                raise Conflict(
                    f"Image status transition from {record.status} to importing is not allowed"
                )
            try:
                check_url(req.uri or "", self.policy)
            except Forbidden as exc:  # Glance's URI filter answers 400
                raise InvalidRequest(
                    f"URI for web-download does not pass filtering: {exc}"
                ) from exc
            except BackendUnavailable as exc:
                # No address for the host: Glance accepts the import (202) and its task fails.
                log.info("image %s: %s; its import task will fail", record.id, exc)
        if not wanted:
            raise InvalidRequest("There is no store to import into")
        return tuple(dict.fromkeys(wanted))

    def staged(self, image_id: str) -> Path:
        return self.staging / image_id

    def start_stage(self, image_id: str) -> Staging:
        """glance-direct's first step: the data goes to the staging area, then ``uploading``."""
        record = self.service.get(image_id)
        if record.status != "queued":
            raise Conflict(
                f"Image status transition from {record.status} to uploading is not allowed"
            )
        make_dir(self.staging, parents=True)
        return Staging(self, image_id)

    # --- jobs ----------------------------------------------------------------------------
    def run_next(self, worker: str) -> bool:
        """Claim one of the site's tasks and run it; False when there was none."""
        task = self.service.catalog.claim_task(self.site, worker, self.lease)
        if task is None:
            return False
        self.run(task, worker)
        return True

    def run(self, task: TaskRecord, worker: str) -> None:
        """Run a claimed task to its end (or until another worker takes it over)."""
        if task.type == locations.TASK_TYPE:  # a location added through the v2.17 API
            with _Job(self, task, worker) as job, contextlib.suppress(LostLease, Cancelled):
                locations.run(self, job)
            return
        req = ImportRequest.parse(task.input.get("import_req"))
        targets = tuple(task.input.get("backend", ()))
        with _Job(self, task, worker) as job:
            try:
                origin = self._origin(task) if req.method == METHOD else None
                copying = req.method == "copy-image" or origin is not None
                if not copying and job.checkpoint.get("phase") != "copy":
                    self._ingest(job, req, targets[0])
                failed = self._copy(job, req, targets, origin)
                self._succeed(job, failed)
            except Stopping:
                log.info("task %s is left at its checkpoint: the server is stopping", task.id)
            except LostLease:
                log.info("task %s was taken over; worker %s stops", task.id, worker)
            except Cancelled:
                log.info("task %s stopped: image %s was deleted", task.id, task.image_id)
            except Exception as exc:
                # A FerryError says what went wrong in one line (a host that does not resolve,
                # a refused URL, a bad image); only the unexpected gets a traceback.
                trace = None if isinstance(exc, FerryError) else exc
                log.warning("import task %s failed: %s", task.id, exc, exc_info=trace)
                self._fail(job, req, targets, exc)

    def ensure(self, image_id: str, store_id: str, worker: str) -> TaskRecord | None:
        """Make sure ``store_id`` holds the image: copy it there now if it does not.

        Returns the task that copied it, or None when the store already had it. If another
        import of the image is running, waits for it and looks again. ``worker`` is named
        after this process's holder, so if the process dies the reconciler frees the task.
        """
        worker = f"{self.service.catalog.holder or self.site}/{worker}"
        while True:
            record = self.service.get(image_id)
            if store_id in record.stores:
                return None
            body = {
                "method": {"name": "copy-image"},
                "stores": [store_id],
                "all_stores_must_succeed": True,
            }
            try:
                task = self.request(image_id, body)
            except ImportBusy:
                time.sleep(0.2)
                continue
            claimed = self.service.catalog.claim_task(self.site, worker, self.lease)
            while claimed is not None and claimed.id != task.id:  # older work first
                self.run(claimed, worker)
                claimed = self.service.catalog.claim_task(self.site, worker, self.lease)
            if claimed is not None:
                self.run(claimed, worker)
            done = self._wait(task.id)
            if done.status != "success" or store_id not in self.service.get(image_id).stores:
                raise Conflict(
                    f"could not copy image {image_id} to store {store_id}: {done.message}"
                )
            return done

    def _wait(self, task_id: str) -> TaskRecord:
        while (task := self.service.catalog.get_task(task_id)).status in ("pending", "processing"):
            time.sleep(0.2)
        return task

    # --- the two phases --------------------------------------------------------------------
    def _ingest(self, job: _Job, req: ImportRequest, store_id: str) -> None:
        store = self._store(store_id)
        image_id = job.task.image_id or ""
        declared = self.service.get(image_id).disk_format
        with _source(self, job, req, declared) as (chunks, converted):
            writer = _writer(store, image_id)
            try:
                for chunk in chunks:
                    failpoints.reach("import.ingest.batch")
                    writer.write(chunk)
                    job.done(writer.size)
                written = writer.finish(None)
            except BaseException:
                writer.abort()
                raise
        fields: dict[str, object] = {
            "status": "active",
            "size": written.size,
            "virtual_size": written.size,
            "checksum": written.checksum,
            "os_hash_algo": "sha512",
            "os_hash_value": written.os_hash_value,
        }
        if converted:  # Glance records what it stored
            fields["disk_format"] = "raw"
        failpoints.reach("import.ingested")
        try:
            job.check()
            self.service.catalog.add_location(
                image_id,
                store.active_location(image_id),
                expect_status=("importing",),
                fields=fields,
            )
        except (Cancelled, NotFound):  # deleted meanwhile: leave none of its data
            _drop(store, image_id, None)
            raise
        self._done_with(image_id, store_id)
        job.commit(phase="copy")
        if req.method == "glance-direct":
            with contextlib.suppress(OSError):
                self.staged(image_id).unlink()

    def _copy(
        self, job: _Job, req: ImportRequest, targets: tuple[str, ...], origin: Origin | None = None
    ) -> list[str]:
        """Copy the image (or a glance-download's ``origin``) into every target that lacks
        it; the stores that failed."""
        image_id = job.task.image_id or ""
        record = self.service.get(image_id)
        data = origin.record if origin else record  # the image whose bytes are copied
        todo = [s for s in targets if s not in record.stores]
        if not todo:
            return []
        source = origin.store if origin else self._source_store(record, todo)
        job.total = data.size
        resume = job.checkpoint.get("targets") == todo and "offset" in job.checkpoint
        start = int(job.checkpoint.get("offset", 0)) if resume else 0
        failed: dict[str, FerryError] = {}
        dests: dict[str, BlockImage] = {}
        try:
            for store_id in todo:
                try:
                    dests[store_id] = _destination(
                        self._store(store_id), image_id, data, fresh=not resume
                    )
                except FerryError as exc:
                    failed[store_id] = exc
            if resume and len(dests) < len(todo):
                start = 0  # a destination was lost: every one starts over
            job.commit(phase="copy", targets=todo, offset=start, resumed_from=start)

            def on_window(end: int) -> None:
                failpoints.reach("copy.window")
                job.done(end)
                job.commit(offset=end)

            with source.open_snap(data.id) as src:
                outcome = transfer(
                    src,
                    dests,
                    expected_sha512=data.os_hash_value,
                    start=start,
                    on_window=on_window,
                )
            job.commit(written=outcome.written, read=outcome.read)
            failed.update(outcome.failed)
            ok = [s for s in todo if s in dests and s not in failed]
            if failed and (req.must_succeed or (origin and not ok)):
                raise next(iter(failed.values()))
            # glance-download: the first location makes the image the origin's copy
            first = (
                origin.activation(outcome.sha512) if origin and record.status != "active" else {}
            )
            for store_id in ok:
                _seal(dests.pop(store_id))
                failpoints.reach("copy.sealed")
                store = self._store(store_id)
                job.check()
                self.service.catalog.add_location(
                    image_id, store.active_location(image_id), **first
                )
                first = {}
                self._done_with(image_id, store_id)
        except LostLease:
            for image in dests.values():  # the new holder goes on writing them
                image.close()
            raise
        except BaseException:  # a failure, or Cancelled (the image was deleted): drop the data
            for store_id in todo:
                if store_id in dests or store_id in failed:
                    _drop(self._store(store_id), image_id, dests.pop(store_id, None))
            raise
        for store_id in failed:
            _drop(self._store(store_id), image_id, dests.pop(store_id, None))
        self._mark_failed(image_id, failed)
        return sorted(failed)

    # --- bookkeeping -----------------------------------------------------------------------
    def _succeed(self, job: _Job, failed: list[str]) -> None:
        image_id = job.task.image_id or ""
        record = self.service.get(image_id)
        self.service.catalog.update_image(
            image_id, set_properties={IMPORTING: ""}, remove_properties={IMPORT_TASK}
        )
        message = "" if failed else f"Copied {(record.size or 0) >> 20} MiB"
        job.finish("success", message, {"image_id": image_id})

    def _fail(
        self, job: _Job, req: ImportRequest, targets: tuple[str, ...], exc: Exception
    ) -> None:
        image_id = job.task.image_id or ""
        with contextlib.suppress(NotFound):
            record = self.service.get(image_id)
            pending = set(filter(None, record.properties.get(IMPORTING, "").split(",")))
            missing = set(targets) - set(record.stores)
            self._mark_failed(image_id, dict.fromkeys(pending | missing))
            back = WAITING.get(req.method)
            self.service.catalog.update_image(
                image_id,
                fields={"status": back} if back and record.status == "importing" else {},
                set_properties={IMPORTING: ""},
                remove_properties={IMPORT_TASK},
            )
        job.finish("failure", str(exc) or type(exc).__name__, None)

    def _done_with(self, image_id: str, store_id: str) -> None:
        record = self.service.get(image_id)
        left = [s for s in record.properties.get(IMPORTING, "").split(",") if s and s != store_id]
        self.service.catalog.update_image(image_id, set_properties={IMPORTING: ",".join(left)})

    def _mark_failed(self, image_id: str, failed: Mapping[str, object]) -> None:
        if not failed:
            return
        record = self.service.get(image_id)
        before = set(filter(None, record.properties.get(FAILED, "").split(",")))
        self.service.catalog.update_image(
            image_id, set_properties={FAILED: ",".join(sorted(before | set(failed)))}
        )

    def _store(self, store_id: str) -> Store:
        store = self.service.stores.get(store_id)
        if store is None:
            raise NotFound(f"Store for identifier {store_id} not found")
        return store

    def _origin(self, task: TaskRecord) -> Origin:
        source = task.input.get(INPUT) or {}
        return Origin.find(self.service.catalog, self.service.stores, self.site, source)

    def _source_store(self, record: ImageRecord, todo: list[str]) -> Store:
        """A store of this site holding the image: the site's default store first."""
        default = self.service.stores.default.id
        for store_id in sorted(record.stores, key=lambda s: s != default):
            store = self.service.stores.get(store_id)
            if store is not None and store_id not in todo:
                return store
        raise NotFound(f"No store of site {self.site} holds image {record.id} to copy from")


class Staging:
    """One staging upload: ``feed`` chunks in order, then ``finish`` or ``abort``.

    The data goes to a temporary file (zero runs left as holes) that becomes the staged
    file by one rename once it is complete and synced.
    """

    def __init__(self, imports: Imports, image_id: str) -> None:
        self.imports = imports
        self.image_id = image_id
        self._file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in finish/abort
            dir=imports.staging, prefix=f".stage-{os.getpid()}-", delete=False
        )
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        failpoints.reach("stage.chunk")
        self.size += _write_sparse(self._file, chunk)

    def finish(self) -> ImageRecord:
        self._file.truncate(self.size)
        os.fsync(self._file.fileno())
        self._file.close()
        path = self.imports.staged(self.image_id)
        os.replace(self._file.name, path)
        failpoints.reach("stage.renamed")
        try:
            return self.imports.service.catalog.update_image(
                self.image_id,
                expect_status=("queued",),
                fields={"status": "uploading", "size": self.size},
            )
        except BaseException:
            path.unlink()
            raise

    def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._file.name)


class _Job:
    """A claimed task while it runs: its lease kept alive, its checkpoint and progress."""

    def __init__(self, imports: Imports, task: TaskRecord, worker: str) -> None:
        self.imports = imports
        self.task = task
        self.worker = worker
        self.checkpoint: dict[str, Any] = dict(task.checkpoint or {})
        self.progress = task.progress_done
        self.total = task.progress_total
        self.lost = threading.Event()
        self.cancelled = threading.Event()
        self._held_at = time.monotonic()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lease-{task.id}", daemon=True)

    def __enter__(self) -> _Job:
        self._beat.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._beat.join()
        if isinstance(exc_info[1], Stopping) or self.imports.stopping.is_set():
            with contextlib.suppress(FerryError):  # let the next worker claim it at once
                self.imports.service.catalog.hold_task(self.task.id, self.worker, timedelta(0))

    def _hold(self, **fields: object) -> None:
        catalog = self.imports.service.catalog
        if self.total is not None:
            fields.setdefault("progress_total", self.total)
        try:
            catalog.hold_task(self.task.id, self.worker, self.imports.lease, **fields)
        except Conflict as exc:
            with contextlib.suppress(NotFound):
                if catalog.get_task(self.task.id).status not in ("pending", "processing"):
                    self.cancelled.set()  # finished by another hand: the image was deleted
                    raise Cancelled(f"task {self.task.id} was cancelled: {exc}") from exc
            self.lost.set()
            raise LostLease(str(exc)) from exc
        self._held_at = time.monotonic()

    def _heartbeat(self) -> None:
        period = self.imports.lease.total_seconds() / 3
        while not self._stop.wait(period):
            try:
                self._hold(progress_done=self.progress)
            except (LostLease, Cancelled):
                return
            except FerryError as exc:  # the catalogue is down: try again next beat
                log.warning("lease renewal of task %s failed: %s", self.task.id, exc)

    def check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled(f"task {self.task.id} was cancelled: its image was deleted")
        if self.lost.is_set():
            raise LostLease(f"task {self.task.id} was taken over")
        if self.imports.stopping.is_set():
            raise Stopping(f"task {self.task.id} stops at its checkpoint: the server is stopping")

    def done(self, progress: int) -> None:
        """Record progress; at most once a second, also ask the catalogue whether to go on
        (so a DELETE of the image stops the job within a second, not a lease period)."""
        self.progress = progress
        self.check()
        if time.monotonic() - self._held_at >= 1.0:
            self._hold(progress_done=progress)

    def interrupted(self) -> bool:
        """For long steps that cannot call ``done`` (qemu-img): should this job stop now?"""
        try:
            self.done(self.progress)
        except (LostLease, Cancelled):
            return True
        except FerryError as exc:  # the catalogue is down: go on, ask again next time
            log.warning("task %s could not ask whether to go on: %s", self.task.id, exc)
        return False

    def commit(self, **checkpoint: object) -> None:
        """Record the checkpoint durably (and renew the lease); LostLease if taken over."""
        self.check()
        self.checkpoint.update(checkpoint)
        self._hold(checkpoint=dict(self.checkpoint), progress_done=self.progress)

    def finish(self, status: str, message: str, result: dict[str, Any] | None) -> None:
        with contextlib.suppress(LostLease, Cancelled):
            self._hold(
                status=status,
                message=message,
                result=result,
                expires_at=utcnow() + TASK_EXPIRY,
                progress_done=self.progress,
            )


@contextlib.contextmanager
def _source(
    imports: Imports, job: _Job, req: ImportRequest, declared: str | None
) -> Iterator[tuple[Iterator[bytes], bool]]:
    """The bytes to ingest, and whether they were converted to raw.

    The format is told from the bytes and must match ``declared`` (the image's disk_format).
    Raw data from a URL streams through; anything to convert is written to a file first and
    converted to raw beside it (when conversion is on). A staged file is read in place.
    """
    image_id = job.task.image_id or ""
    work = imports.staging / f".{image_id}.{job.task.id}"
    make_dir(work, parents=True)
    convert_on = imports.config.convert
    try:
        if req.method == "glance-direct":
            path = imports.staged(image_id)
            if not path.exists():
                raise NotFound(f"the staged data of image {image_id} is gone")
            with path.open("rb") as f:
                found = inspect(f.read(HEAD))
            check_declared(declared, found)
        else:
            with open_url(req.uri or "", imports.policy) as fetched:
                chunks = fetched.chunks(BATCH)
                first = b"".join(_take(chunks, HEAD))
                found = inspect(first)
                check_declared(declared, found)
                if not convert_on or found.format == "raw":
                    yield _chain(first, chunks), False
                    return
                path = work / "download"
                with path.open("wb") as f:
                    for chunk in _chain(first, chunks):
                        _write_sparse(f, chunk)
                        job.done(f.tell())
                    f.truncate()
        if convert_on and found.format != "raw":
            raw = work / "raw"
            limits = convert.Limits(max_virtual_size=imports.max_image_size)
            try:  # refuses hostile images, and those too large once converted, first
                convert.convert_to_raw(
                    path, found.format, raw, limits=limits, cancelled=job.interrupted
                )
                failpoints.reach("import.converted")
            except Cancelled:
                job.check()  # the job's own reason: cancelled, taken over or stopping
                raise
            yield _file_chunks(raw), True
        else:
            yield _file_chunks(path), False
    finally:
        for leftover in work.glob("*"):
            leftover.unlink()
        work.rmdir()


def _take(chunks: Iterator[bytes], n: int) -> Iterator[bytes]:
    got = 0
    for chunk in chunks:
        yield chunk
        got += len(chunk)
        if got >= n:
            return


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(BATCH):
            yield chunk


def _write_sparse(f: Any, chunk: bytes) -> int:
    """Write ``chunk`` at the file's position, seeking over it when it is all zeros."""
    if chunk.count(0) == len(chunk):
        f.seek(len(chunk), os.SEEK_CUR)
    else:
        f.write(chunk)
    return len(chunk)


def _writer(store: Store, image_id: str) -> ImageWriter:
    """A writer into ``images/<id>``; a leftover of a dead worker is removed first."""
    try:
        return ImageWriter(store, image_id, None)
    except AlreadyExists:
        store.delete(image_id)
        return ImageWriter(store, image_id, None)


def _destination(store: Store, image_id: str, record: ImageRecord, *, fresh: bool) -> BlockImage:
    """``images/<id>`` in a destination store: new, or (resuming) the one being written."""
    cluster = store.cluster
    spec = store.spec(image_id, None)
    if not fresh:
        with contextlib.suppress(NotFound):
            return store.open(spec)
    with contextlib.suppress(NotFound):
        store.delete(image_id)  # a leftover of an earlier attempt
    cluster.create(spec.pool, spec.name, record.size or 0)
    return store.open(spec)


def _seal(image: BlockImage) -> None:
    with image:
        if SNAP not in {s.name for s in image.list_snaps()}:
            image.create_snap(SNAP)
            image.protect_snap(SNAP)


def _drop(store: Store, image_id: str, image: BlockImage | None) -> None:
    if image is not None:
        image.close()
    with contextlib.suppress(FerryError):
        store.delete(image_id)


class Worker:
    """A thread that runs the site's import jobs, polling the catalogue for work."""

    def __init__(self, imports: Imports, poll: float = 0.5) -> None:
        self.imports = imports
        holder = imports.service.catalog.holder  # so the reconciler knows when it died
        self.name = f"{holder or imports.site}/worker-{uuid.uuid4().hex[:8]}"
        self.poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"worker-{self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop: a running job stops at its next checkpoint and is left for the next worker."""
        self._stop.set()
        self.imports.stopping.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.imports.run_next(self.name):
                    continue
            except Exception:  # a broken catalogue must not kill the worker
                log.exception("import worker %s", self.name)
            self._stop.wait(self.poll)
