"""Image API v2.17's locations: ``GET`` and ``POST /v2/images/{id}/locations``.

A location says where a store of the site already holds an image's data. Two kinds are taken:

- an http(s) URL, held by the site's http store: the data stays at the URL (Glance's read-only
  http store) and is read from there, through web-download's SSRF guard;
- the RBD location of the image's own block image in one of the site's stores,
  ``rbd://<fsid>/<pool>/<image id>/snap`` (``embedded://`` on an embedded cluster): the data
  Nova and Cinder write themselves before they register it.

Adding one is allowed once, on a ``queued`` image. It records the location and a
``location_import`` task; a worker of the site reads the data once for its size, md5 checksum
and hash (Glance's ``do_secure_hash``, in the ``validation_data``'s algorithm, sha512 by
default) and checks them against the ``validation_data``. As in Glance's flow: with validation
data the image is ``importing`` until they match, and ``queued`` again (hashes cleared) if they
do not, its location dropped unless it is an http URL (Glance's http store keeps it); without,
the image is ``active`` at once and its hashes follow.
"""

from __future__ import annotations

import hashlib
import logging
import string
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ferry.catalog import ImageRecord, TaskRecord
from ferry.catalog.records import Location
from ferry.errors import Cancelled, Conflict, FerryError, InvalidRequest, NotFound
from ferry.images.fetch import open_url
from ferry.images.stores import RbdLocation, Store, Stores
from ferry.images.transfer import read_range

if TYPE_CHECKING:
    from ferry.images.imports import Imports

log = logging.getLogger(__name__)

TASK_TYPE = "location_import"
DEFAULT_ALGO = "sha512"  # Glance's hashing_algorithm
# Fixed-length hashes hashlib always has (shake_* take a length, so they cannot be checked).
ALGOS = frozenset(a for a in hashlib.algorithms_guaranteed if not a.startswith("shake"))


class Job(Protocol):
    """What a location task needs of the worker's job (``imports._Job``)."""

    task: TaskRecord

    def done(self, progress: int) -> None: ...

    def finish(self, status: str, message: str, result: dict[str, Any] | None) -> None: ...


@dataclass(frozen=True)
class ValidationData:
    """The hash a client says the data has (``validation_data``), checked for form."""

    os_hash_algo: str
    os_hash_value: str
    checksum: str | None = None

    @classmethod
    def parse(cls, value: object) -> ValidationData | None:
        """None for none (an empty object is none); Glance's 400 for a malformed one."""
        if value is None or value == {}:
            return None
        if not isinstance(value, Mapping):
            raise InvalidRequest("validation_data must be an object")
        unknown = set(value) - {"os_hash_algo", "os_hash_value", "checksum"}
        if unknown:
            raise InvalidRequest(f"validation_data has unknown keys: {', '.join(sorted(unknown))}")
        algo, digest = value.get("os_hash_algo"), value.get("os_hash_value")
        if not isinstance(digest, str):
            raise InvalidRequest("validation_data needs os_hash_value (and os_hash_algo)")
        if not isinstance(algo, str):
            raise InvalidRequest("os_hash_algo must be given with os_hash_value")
        if algo not in ALGOS:
            raise InvalidRequest(f"os_hash_algo {algo!r} is not a supported hashing algorithm")
        _check_hex("os_hash_value", digest, algo)
        checksum = value.get("checksum")
        if checksum is not None:
            if not isinstance(checksum, str):
                raise InvalidRequest("checksum must be a string")
            _check_hex("checksum", checksum, "md5")
        return cls(algo, digest.lower(), checksum.lower() if checksum else None)


def _check_hex(name: str, value: str, algo: str) -> None:
    want = hashlib.new(algo).digest_size
    if not value or set(value) - set(string.hexdigits):
        raise InvalidRequest(f"{name} ({value}) is not a valid hexadecimal value")
    if len(value) != 2 * want:
        raise InvalidRequest(
            f"{name} ({value}) is not the correct size for {algo} (should be {want} bytes)"
        )


def store_for(stores: Stores, url: str, image_id: str) -> Store:
    """The site's store that holds ``url``; 400 when none does."""
    scheme = url.partition("://")[0].lower()
    if scheme in ("http", "https"):
        for store in stores:
            if store.config.type == "http":
                return store
        raise InvalidRequest(f"No http store at this site holds {url}")
    if scheme in ("rbd", "embedded"):
        wanted = RbdLocation.parse(url)
        for store in stores:
            if store.config.type == "rbd" and _same(store, wanted, image_id):
                return store
        raise InvalidRequest(
            f"{url} is not image {image_id}'s block image in a store of this site "
            f"(rbd://<fsid>/<pool>/{image_id}/snap)"
        )
    raise InvalidRequest(f"Invalid location: {url} (http, https or rbd URLs only)")


def _same(store: Store, wanted: RbdLocation, image_id: str) -> bool:
    try:
        return store.location(image_id) == wanted
    except FerryError:  # a cluster this site cannot reach now
        return False


def add(
    imports: Imports,
    image_id: str,
    body: object,
    request_id: str | None = None,
    user_id: str | None = None,
) -> TaskRecord:
    """``POST /v2/images/{id}/locations``: record the location and its verifying task."""
    if not isinstance(body, Mapping) or not isinstance(body.get("url"), str):
        raise InvalidRequest("The request needs a location 'url'")
    url = body["url"]
    val = ValidationData.parse(body.get("validation_data"))
    catalog = imports.service.catalog
    record = imports.service.get(image_id)
    if record.status != "queued":
        raise Conflict(
            f"It's not allowed to add locations if image status is {record.status}. "
            "Locations can be added to queued images only."
        )
    store = store_for(imports.service.stores, url, image_id)
    task = TaskRecord(
        id=str(uuid.uuid4()),
        type=TASK_TYPE,
        owner=record.owner,
        image_id=image_id,
        request_id=request_id,
        user_id=user_id,
        input={
            "image_id": image_id,
            "loc_url": url,
            "validation_data": dict(body.get("validation_data") or {}),
            "backend": [store.id],
        },
        site=imports.site,
    )
    # The image first (a compare-and-set on queued: of two adds only one wins), then the
    # task, so a worker never claims a task whose image is not ready for it.
    catalog.add_location(
        image_id,
        Location(store.id, url, "active"),
        expect_status=("queued",),
        fields={
            "status": "importing" if val else "active",
            "os_hash_algo": val.os_hash_algo if val else DEFAULT_ALGO,
        },
    )
    try:
        task = catalog.create_task(task, sole_for_image=True)
    except FerryError:  # another import of the image is under way: undo, as it was
        catalog.update_image(image_id, fields={"status": "queued", "os_hash_algo": None})
        catalog.remove_location(image_id, store.id)
        raise
    return task


def listed(record: ImageRecord) -> list[dict[str, Any]]:
    """``GET /v2/images/{id}/locations``: each location's URL and metadata (its store)."""
    return [
        {"url": loc.url, "metadata": dict(loc.metadata)}
        for loc in record.locations
        if loc.status == "active"
    ]


def run(imports: Imports, job: Job) -> None:
    """The ``location_import`` task: hash the data once, check it, settle the image."""
    from ferry.images.imports import LostLease  # imports runs this module's tasks

    task = job.task
    image_id = task.image_id or ""
    url = str(task.input.get("loc_url", ""))
    val = ValidationData.parse(task.input.get("validation_data"))
    algo = val.os_hash_algo if val else DEFAULT_ALGO
    try:
        store = imports.service.stores.get(str(task.input.get("backend", [""])[0]))
        if store is None:
            raise NotFound(f"The store of location {url} is not one of this site's")
        md5, digest, size = hashlib.md5(usedforsecurity=False), hashlib.new(algo), 0
        for chunk in _data(imports, store, url, image_id):
            md5.update(chunk)
            digest.update(chunk)
            size += len(chunk)
            job.done(size)
        found = {"checksum": md5.hexdigest(), "os_hash_value": digest.hexdigest()}
        fields: dict[str, object] = {"size": size, "os_hash_algo": algo, **found}
        if val is not None:
            _verify(val, found)
            fields["status"] = "active"
        imports.service.catalog.update_image(
            image_id, expect_status=("importing",) if val else ("active",), fields=fields
        )
    except (LostLease, Cancelled):
        raise  # the job's own ending: the worker knows what to do
    except Exception as exc:
        log.warning("location task %s of image %s failed: %s", task.id, image_id, exc)
        if val is None:  # the image stays active, as in Glance; only its hash is missing
            job.finish("success", f"Hash calculation failed for image {image_id} data", None)
            return
        _revert(imports, image_id, url)
        job.finish("failure", str(exc) or type(exc).__name__, None)
        return
    job.finish("success", "", {"image_id": image_id})


def _verify(val: ValidationData, found: Mapping[str, str]) -> None:
    if val.os_hash_value != found["os_hash_value"]:
        raise InvalidRequest(
            f"os_hash_value: ({val.os_hash_value}) not matched with actual "
            f"os_hash_value: ({found['os_hash_value']})"
        )
    if val.checksum is not None and val.checksum != found["checksum"]:
        raise InvalidRequest(
            f"checksum: ({val.checksum}) not matched with actual checksum: ({found['checksum']})"
        )


def _revert(imports: Imports, image_id: str, url: str) -> None:
    """Back to queued, hashes cleared; the location goes unless it is an http URL."""
    catalog = imports.service.catalog
    cleared = {"status": "queued", "os_hash_algo": None, "os_hash_value": None, "checksum": None}
    try:
        record = catalog.update_image(image_id, expect_status=("importing",), fields=cleared)
        for loc in record.locations:
            if loc.url == url and not url.lower().startswith(("http://", "https://")):
                catalog.remove_location(image_id, loc.store, expect_status=("queued",))
    except FerryError as exc:  # deleted or changed meanwhile: nothing of ours to undo
        log.info("image %s was not reverted: %s", image_id, exc)


def _data(imports: Imports, store: Store, url: str, image_id: str) -> Iterator[bytes | memoryview]:
    """The location's bytes: from the URL (the SSRF guard applies), or the block image."""
    if store.config.type == "http":
        with open_url(url, imports.policy) as fetched:
            yield from fetched.chunks()
        return
    image = store.open_snap(image_id)
    try:
        size = image.stat().size
    except BaseException:
        image.close()
        raise
    yield from read_range(image, 0, size)  # closes the image


def http_data(
    imports: Imports, record: ImageRecord, store: Store, start: int, end: int
) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of an image an http store holds, read from its URL (through
    web-download's guard), as Glance's http store serves a download."""
    url = next(
        loc.url for loc in record.locations if loc.store == store.id and loc.status == "active"
    )
    with open_url(url, imports.policy) as fetched:
        pos = 0
        for chunk in fetched.chunks():
            lo, hi = max(start - pos, 0), min(end - pos, len(chunk))
            if lo < hi:
                yield chunk[lo:hi]
            pos += len(chunk)
            if pos >= end:
                return
