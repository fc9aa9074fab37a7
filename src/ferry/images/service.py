"""Glance's image behaviour: records, the status machine, data in stores.

Status machine (as Glance)::

    queued --upload--> saving --done--> active <--reactivate-- deactivated
       ^                  |                 \\--deactivate--------^
       +-----failed-------+                  (delete: any status -> deleted)
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jsonschema

from ferry import failpoints
from ferry.catalog import Catalog, ImageRecord
from ferry.catalog.listing import MEMBER_STATUS_FILTERS, VISIBILITY_FILTERS, Viewer
from ferry.config import LimitsConfig
from ferry.errors import (
    AlreadyExists,
    Conflict,
    FerryError,
    Forbidden,
    InUse,
    InvalidRequest,
    NoData,
    NotFound,
    ReadOnlyStore,
    TooLarge,
)
from ferry.identity.context import Context
from ferry.images.formats import check_declared
from ferry.images.stores import Store, Stores
from ferry.images.upload import ImageWriter

if TYPE_CHECKING:
    from ferry.images.location_patch import LocationPatch

log = logging.getLogger(__name__)

READ_ONLY = frozenset(
    {"id", "status", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size",
     "created_at", "updated_at", "direct_url", "self", "file", "schema"}
)  # fmt: skip
# Computed from the locations on every read. openstacksdk echoes it back in its patches;
# Glance keeps it as a shadowed extra property, ferry ignores such operations.
COMPUTED = frozenset({"stores"})
CORE = frozenset(
    {"name", "visibility", "protected", "os_hidden", "min_disk", "min_ram", "disk_format",
     "container_format", "owner", "tags", "locations"}
) | READ_ONLY  # fmt: skip
RESERVED = frozenset({"location", "deleted", "deleted_at"})
RESERVED_PREFIX = "os_glance"
# JSON-patch media types. v2.1 is RFC 6902's form; v2.0 (Glance's older, draft-4 form) names
# the operation by its key, ``{"replace": "/name", "value": "x"}``, and its ``add`` never
# overwrites an attribute the image has.
PATCH_V21 = "application/openstack-images-v2.1-json-patch"
PATCH_V20 = "application/openstack-images-v2.0-json-patch"
PATCH_TYPES = (PATCH_V21, PATCH_V20)
PATCH_OPS = ("add", "remove", "replace")
# Glance refuses these location schemes outright (LP #942118, #1334196): they name the API
# node's own files.
RESTRICTED_SCHEMES = frozenset({"file", "filesystem", "swift+config"})
DEFAULT_LIMITS = LimitsConfig.model_validate({})
# Sees each JSON-patch operation (kind, attribute, value) before it is applied; raises to refuse.
PatchGuard = Callable[[str, str, Any], None]


@cache
def schema(name: str) -> dict[str, Any]:
    """Glance's JSON schema ``image``, ``images``, ``task`` or ``tasks``."""
    text = resources.files("ferry.images").joinpath(f"schemas/{name}.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def validate(document: Mapping[str, Any]) -> None:
    """Check an image document against Glance's image schema, with Glance's message."""
    try:
        jsonschema.Draft4Validator(schema("image")).validate(dict(document))
    except jsonschema.ValidationError as exc:
        raise InvalidRequest(f"Provided object does not match schema 'image': {exc}") from exc


def check_quotas(properties: Collection[str], tags: Collection[str], limits: LimitsConfig) -> None:
    """Glance's image_property_quota and image_tag_quota, with its words and its 413."""
    for what, count, most in (
        ("properties", len(properties), limits.image_property_quota),
        ("tags", len(tags), limits.image_tag_quota),
    ):
        if count > most:
            raise TooLarge(
                f"The limit has been exceeded on the number of allowed image {what}. "
                f"Attempted: {count}, Maximum: {most}"
            )


def _check_writable(name: str) -> None:
    if name in READ_ONLY:
        raise Forbidden(f"Attribute '{name}' is read-only.")
    if name in RESERVED or name.startswith(RESERVED_PREFIX):
        raise Forbidden(f"Attribute '{name}' is reserved.")


@dataclass(frozen=True)
class ListQuery:
    filters: Mapping[str, str | list[str]] = field(default_factory=dict)
    sort: Sequence[tuple[str, str]] = (("created_at", "desc"),)
    marker: str | None = None
    limit: int = 25
    member_status: str = "accepted"  # which of the caller's shared images to list


class ImageService:
    """Every image operation of one site; the API and the CLI call these and nothing else."""

    def __init__(self, catalog: Catalog, stores: Stores, owner: str) -> None:
        self.catalog = catalog
        self.stores = stores
        self.owner = owner

    # --- records ---------------------------------------------------------------------------
    def create(
        self,
        body: Mapping[str, Any],
        limits: LimitsConfig = DEFAULT_LIMITS,
        ctx: Context | None = None,
    ) -> ImageRecord:
        """A new queued image, owned by the caller's project unless the body names an owner."""
        body = {k: v for k, v in body.items() if k not in COMPUTED}
        for key in body.keys() - {"id"}:
            _check_writable(key)
        validate(body)
        if "locations" in body:
            _refuse_locations(body["locations"])
        core = {k: v for k, v in body.items() if k in CORE}
        extra = {k: v for k, v in body.items() if k not in CORE}
        check_quotas(extra, set(core.get("tags", ())), limits)
        now = datetime.now(UTC).replace(microsecond=0)
        record = ImageRecord(
            id=str(body.get("id") or uuid.uuid4()),
            name=core.get("name"),
            status="queued",
            disk_format=core.get("disk_format"),
            container_format=core.get("container_format"),
            size=None,
            virtual_size=None,
            checksum=None,
            os_hash_algo=None,
            os_hash_value=None,
            owner=core.get("owner", self.owner if ctx is None else ctx.project_id),
            visibility=core.get("visibility", "shared"),
            protected=bool(core.get("protected", False)),
            os_hidden=bool(core.get("os_hidden", False)),
            min_disk=int(core.get("min_disk", 0)),
            min_ram=int(core.get("min_ram", 0)),
            created_at=now,
            updated_at=now,
            properties=extra,
            tags=tuple(sorted(set(core.get("tags", ())))),
            locations=(),
        )
        try:
            return self.catalog.create_image(record)
        except AlreadyExists as exc:
            raise Conflict(f"Image ID {record.id} already exists!") from exc

    def get(self, image_id: str) -> ImageRecord:
        return self.catalog.get_image(image_id)

    def list(self, query: ListQuery, ctx: Context | None = None) -> list[ImageRecord]:
        """The images matching the query that Glance lists to the caller (all, without one)."""
        visibility = query.filters.get("visibility")
        if visibility and (not isinstance(visibility, str) or visibility not in VISIBILITY_FILTERS):
            raise InvalidRequest(f"Invalid visibility value: {visibility}")
        if query.member_status not in MEMBER_STATUS_FILTERS:
            raise InvalidRequest(f"Invalid status: {query.member_status}")
        viewer = None
        if ctx is not None:
            viewer = Viewer(ctx.project_id, ctx.can_see_all(), query.member_status)
        return self.catalog.list_images(
            filters=query.filters,
            sort=query.sort,
            marker=query.marker,
            limit=query.limit,
            viewer=viewer,
        )

    def update(
        self,
        image_id: str,
        ops: Sequence[Mapping[str, Any]],
        limits: LimitsConfig = DEFAULT_LIMITS,
        media_type: str = PATCH_V21,
        guard: PatchGuard | None = None,
        locations: LocationPatch | None = None,
    ) -> ImageRecord:
        """Apply a JSON patch (either of Glance's media types) with Glance's rules; ``guard``
        sees each operation (kind, attribute, value) before it is applied, and may refuse it.
        With ``locations``, operations on ``/locations`` are its (applied last, in order);
        without, a location given is refused."""
        draft4 = media_type == PATCH_V20
        changes = [_from_draft4(op) for op in ops] if draft4 else list(ops)
        record = self.get(image_id)
        doc = _document(record)
        for op in changes:
            _apply(doc, op, add_overwrites=not draft4, guard=guard, locations=locations)
        validate({k: v for k, v in doc.items() if k not in READ_ONLY})
        fields = {k: doc[k] for k in CORE - READ_ONLY - {"tags", "locations"} if k in doc}
        extra = {k: v for k, v in doc.items() if k not in CORE}
        check_quotas(extra, set(doc.get("tags", [])), limits)
        removed = set(record.properties) - set(extra)
        record = self.catalog.update_image(
            image_id,
            fields={k: v for k, v in fields.items() if getattr(record, k) != v},
            set_properties={k: v for k, v in extra.items() if record.properties.get(k) != v},
            remove_properties=removed,
            tags=sorted(set(doc.get("tags", []))),
        )
        return locations.apply(record) if locations is not None else record

    def delete(self, image_id: str) -> None:
        try:
            record = self.get(image_id)
        except NotFound as exc:
            raise NotFound(f"Failed to find image {image_id} to delete") from exc
        if record.protected:
            raise Forbidden(f"Image {image_id} is protected and cannot be deleted.")
        held = dict.fromkeys(loc.store for loc in record.locations)  # an http store: once
        stores = [s for s in (self.stores.get(store_id) for store_id in held) if s]
        if any(s.in_use(image_id) for s in stores):
            raise InUse(
                f"Image {image_id} could not be deleted because it is in use: The image cannot "
                "be deleted because it is in use through the backend store outside of Glance."
            )
        self.catalog.delete_image(image_id)  # durable: the record says which data to remove
        failpoints.reach("image.delete.marked")
        try:
            for store in stores:
                if self._drop_data(store, image_id):
                    failpoints.reach("image.delete.store")
                    self.catalog.forget_location(image_id, store.id)
        finally:
            # What is left (a store that failed, or one this site does not reach) is the
            # reconciler's to finish, here or at a site that reaches it.
            self.catalog.owners.release("images", image_id)

    def set_tag(
        self, image_id: str, tag: str, present: bool, limits: LimitsConfig = DEFAULT_LIMITS
    ) -> ImageRecord:
        """Add or remove one tag, without losing a tag another request adds meanwhile."""
        if present:
            tags = self.get(image_id).tags
            if tag not in tags:
                check_quotas((), (*tags, tag), limits)
            return self.catalog.update_image(image_id, add_tags=[tag])
        if tag not in self.get(image_id).tags:
            raise NotFound(f"Tag {tag} not found in image {image_id}.")
        return self.catalog.update_image(image_id, remove_tags=[tag])

    def deactivate(self, image_id: str, active: bool) -> ImageRecord:
        """Deactivate (``active=False``) or reactivate an image; both are idempotent."""
        record = self.get(image_id)
        want = "active" if active else "deactivated"
        if record.status == want:
            return record
        if record.status not in ("active", "deactivated"):
            verb = "reactivate" if active else "deactivate"
            raise Forbidden(f"Not allowed to {verb} image in status '{record.status}'")
        return self.catalog.update_image(
            image_id, expect_status=("active", "deactivated"), fields={"status": want}
        )

    # --- data ------------------------------------------------------------------------------
    def writable_store(self, store_id: str | None) -> Store:
        store = self.stores.default if store_id is None else self.stores.get(store_id)
        if store is None:
            raise InvalidRequest(f"Store for identifier {store_id} not found")
        if store.config.read_only:
            raise ReadOnlyStore("Error in store configuration. Adding images to store is disabled.")
        return store

    def start_upload(self, image_id: str, store_id: str | None, size: int | None) -> Upload:
        """Claim a queued image for an upload (only one wins) and open its block image."""
        store = self.writable_store(store_id)
        record = self.get(image_id)
        if record.status != "queued":
            raise Conflict(f"Image status transition from {record.status} to saving is not allowed")
        record = self.catalog.update_image(
            image_id, expect_status=("queued",), fields={"status": "saving"}
        )
        try:
            try:
                writer = ImageWriter(store, image_id, size)
            except AlreadyExists:  # a cut-off upload's data the reconciler has not removed
                store.delete(image_id)
                writer = ImageWriter(store, image_id, size)
        except BaseException:
            self._back_to_queued(image_id)
            raise
        return Upload(self, record, writer, size)

    def data_store(self, image_id: str) -> tuple[ImageRecord, Store]:
        """Where to read an image's data from: this site's default store first."""
        record = self.get(image_id)
        if record.status == "deactivated":
            raise Forbidden(
                "The requested image has been deactivated. Image data download is forbidden."
            )
        held = [loc.store for loc in record.locations if loc.status == "active"]
        for store_id in sorted(held, key=lambda s: s != self.stores.default.id):
            store = self.stores.get(store_id)
            if store is not None:
                return record, store
        if not held:
            raise NoData(f"The requested image {image_id} has no data.")
        raise NotFound(f"None of the stores holding image {image_id} is reachable from this site")

    def delete_from_store(self, store_id: str, image_id: str) -> None:
        store = self.stores.get(store_id)
        if store is None:
            raise Conflict(f"The selected store {store_id} is not available on this node.")
        try:
            record = self.get(image_id)
        except NotFound as exc:
            raise NotFound(f"Failed to find image {image_id}") from exc
        if store_id not in {loc.store for loc in record.locations}:
            raise NotFound(f"Image {image_id} is not stored in store {store_id}.")
        if all(loc.store == store_id for loc in record.locations):  # its URLs, if http
            raise Forbidden(
                "Cannot delete image data from the only store containing it. "
                "Consider deleting the image instead."
            )
        if store.in_use(image_id):
            raise InUse("Image is in use.")
        self.catalog.remove_location(image_id, store_id)
        self._drop_data(store, image_id)

    def _drop_data(self, store: Store, image_id: str) -> bool:
        """Remove the image's data from a store; False (and a warning) if it could not."""
        try:
            store.delete(image_id)
        except NotFound:
            pass
        except FerryError as exc:  # the reconciler tries again (its location says where)
            log.warning("could not delete %s from store %s: %s", image_id, store.id, exc)
            return False
        return True

    def _back_to_queued(self, image_id: str) -> None:
        with contextlib.suppress(FerryError):  # deleted meanwhile: nothing to restore
            self.catalog.update_image(
                image_id, expect_status=("saving",), fields={"status": "queued"}
            )


class Upload:
    """One upload in progress: ``feed`` batches in order, then ``finish`` or ``abort``."""

    def __init__(
        self, service: ImageService, record: ImageRecord, writer: ImageWriter, size: int | None
    ) -> None:
        self._service = service
        self.record = record
        self._writer = writer
        self._size = size

    def feed(self, batch: bytes | memoryview) -> None:
        failpoints.reach("upload.batch")
        found = self._writer.peek(batch)
        if found is not None:
            self._check_format()
        self._writer.write(batch)

    def _check_format(self) -> None:
        found = self._writer.inspected
        if found is not None:
            check_declared(self.record.disk_format, found)

    def finish(self) -> ImageRecord:
        written = self._writer.finish(self._size)
        self._check_format()
        store = self._writer.store
        image_id = self.record.id
        failpoints.reach("upload.written")
        try:
            return self._service.catalog.add_location(
                image_id,
                store.active_location(image_id),
                expect_status=("saving",),
                fields={
                    "status": "active",
                    "size": written.size,
                    "virtual_size": written.inspected.virtual_size or written.size,
                    "checksum": written.checksum,
                    "os_hash_algo": "sha512",
                    "os_hash_value": written.os_hash_value,
                },
            )
        except FerryError:
            store.delete(image_id)  # deleted while uploading: leave no data behind
            raise

    def abort(self) -> None:
        self._writer.abort()
        self._service._back_to_queued(self.record.id)


def _document(record: ImageRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {k: getattr(record, k) for k in CORE - READ_ONLY - {"tags", "locations"}}
    doc.update(record.properties)
    doc["tags"] = list(record.tags)
    return doc


def _from_draft4(op: object) -> Mapping[str, Any]:
    """A v2.0 operation (``{"add": "/x", "value": 1}``) in the v2.1 form, Glance's 400s kept."""
    if not isinstance(op, Mapping):
        raise InvalidRequest("Operations must be JSON objects.")
    kinds = [k for k in PATCH_OPS if k in op]
    if len(kinds) != 1:
        count = "only one" if kinds else "exactly one"
        raise InvalidRequest(
            f'Operation objects must contain {count} member named "add", "remove", or "replace".'
        )
    change = {"op": kinds[0], "path": op[kinds[0]]}
    if "value" in op:
        change["value"] = op["value"]
    return change


def _apply(
    doc: dict[str, Any],
    op: Mapping[str, Any],
    *,
    add_overwrites: bool = True,
    guard: PatchGuard | None = None,
    locations: LocationPatch | None = None,
) -> None:
    """One JSON-patch operation on an image document, with Glance's attribute rules.

    ``add_overwrites`` False is the v2.0 media type's ``add``: 409 for an attribute the
    image already has (core attributes always exist).
    """
    if not isinstance(op, Mapping):
        raise InvalidRequest("Operations must be JSON objects.")  # Glance's words
    kind, path = op.get("op"), op.get("path")
    if kind not in ("add", "replace", "remove") or not isinstance(path, str):
        raise InvalidRequest(f"Unable to find '{kind}' or a valid path in the patch operation")
    root, slash, pos = path.removeprefix("/").partition("/")
    if locations is not None and path.startswith("/") and root == "locations":
        if guard is not None:
            guard(kind, root, op.get("value"))
        locations.collect(kind, pos if slash else None, op)
        return
    name = path.removeprefix("/").replace("~1", "/").replace("~0", "~")
    if not path.startswith("/") or not name or "/" in name:
        raise InvalidRequest(f"Invalid JSON pointer for this resource: '{path}'")
    if name in COMPUTED:
        return
    _check_writable(name)
    if guard is not None:
        guard(kind, name, op.get("value"))
    if kind == "remove":
        if name in CORE:
            raise Forbidden(f"Property {name} may not be removed.")
        if name not in doc:
            raise Conflict(f"Property {name} does not exist.")
        del doc[name]
        return
    if "value" not in op:
        raise InvalidRequest(f"Operation objects must contain 'value' for '{kind}'")
    if kind == "replace" and name not in doc:
        raise Conflict(f"Property {name} does not exist.")
    if kind == "add" and not add_overwrites and (name in doc or name in CORE):
        raise Conflict(f"Property {name} already present.")
    if name == "locations":
        _refuse_locations(op["value"])
        return
    doc[name] = op["value"]


def _refuse_locations(value: object) -> None:
    """ferry's stores get data by upload or import only; no client-given location is taken.

    A location naming the API node's files gets Glance's own answer (400 "Invalid location");
    any other gets 403. An empty list changes nothing and is accepted, as before.
    """
    if value == []:
        return
    found = value if isinstance(value, list) else [value]
    urls = [loc.get("url") if isinstance(loc, Mapping) else None for loc in found]
    if any(not isinstance(u, str) or urlsplit(u).scheme in RESTRICTED_SCHEMES for u in urls):
        raise InvalidRequest("Invalid location")
    raise Forbidden(
        "It's not allowed to add locations: ferry's stores take image data by upload or "
        "import only."
    )
