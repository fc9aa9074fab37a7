"""JSON-patch operations on an image's ``/locations`` (Glance's ``show_multiple_locations``).

The older way clients (Nova, Cinder, Tempest) manage locations, on when the site's
``imports.manage_locations`` is (off, every such operation is refused as before):

- ``add /locations/-`` with ``{"url", "metadata", "validation_data"}``: the URL must be one of
  the site's stores' own (see ``locations.store_for``); a ``queued`` image becomes ``active``
  at once with the validation data as its hashes, nothing read (Glance's old API);
- ``remove /locations/N``: not the last one, of an ``active`` image; a block store's data
  goes too (an http store's stays at its URL);
- ``replace /locations`` with the same URLs in the same order: changes their metadata only.

The http store holds any number of an image's URLs, as Glance's; a block store one location
per image (its URL follows from the store), so a second one there is refused (400). A
location is added at the end only. Validation data follows Glance's
409s: a value differing from the image's, a new value on an image that is not ``queued``,
a hash that is not sha512 or of the wrong size.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ferry.catalog import ImageRecord
from ferry.catalog.records import Location
from ferry.errors import Conflict, FerryError, Forbidden, InvalidRequest
from ferry.images.fetch import open_url
from ferry.images.locations import store_for
from ferry.images.stores import Store

if TYPE_CHECKING:
    from ferry.images.imports import Imports

VALIDATION_KEYS = ("checksum", "os_hash_algo", "os_hash_value")
DIGEST_BYTES = {"checksum": 16, "os_hash_value": 64}  # md5; sha512, Glance's hashing_algorithm


class LocationPatch:
    """The ``/locations`` operations of one PATCH: collected in order, then applied."""

    def __init__(self, imports: Imports) -> None:
        self.imports = imports
        self.ops: list[tuple[str, str | None, Any]] = []

    def collect(self, kind: str, pos: str | None, op: Mapping[str, Any]) -> None:
        """One operation, its pointer checked as Glance's (add and remove name a position)."""
        if (pos is None) != (kind == "replace"):
            where = "/locations" + (f"/{pos}" if pos is not None else "")
            raise InvalidRequest(f"Invalid JSON pointer for this resource: '{where}'")
        if kind != "remove" and "value" not in op:
            raise InvalidRequest(f'Operation "{kind}" requires a member named "value".')
        self.ops.append((kind, pos, op.get("value")))

    def apply(self, record: ImageRecord) -> ImageRecord:
        for kind, pos, value in self.ops:
            if kind == "add":
                record = self._add(record, pos, value)
            elif kind == "remove":
                record = self._remove(record, pos)
            else:
                record = self._replace(record, value)
        return record

    def _add(self, record: ImageRecord, pos: str | None, value: Any) -> ImageRecord:
        if record.status not in ("active", "queued"):
            raise Conflict(f"It's not allowed to add locations if image status is {record.status}.")
        url, metadata = _location(value)
        fields = _validation(record, [value])
        held = _active(record)
        if _position(pos, len(held), allow_end=True) != len(held):
            raise InvalidRequest("A location is added at the end only (/locations/-).")
        if url in {loc.url for loc in held}:
            raise InvalidRequest(f"The location {url} already exists")
        store = store_for(self.imports.service.stores, url, record.id)
        several = store.config.type == "http"
        if not several and store.id in {loc.store for loc in held}:
            raise InvalidRequest(
                f"Image {record.id} already has a location in store {store.id}; "
                "a block store keeps one location per image"
            )
        if record.status == "queued":
            fields |= {"status": "active", "size": self._size(store, url, record.id)}
        return self.imports.service.catalog.add_location(
            record.id,
            Location(store.id, url, "active", metadata),
            one_per_store=not several,
            expect_status=(record.status,),
            fields=fields,
        )

    def _remove(self, record: ImageRecord, pos: str | None) -> ImageRecord:
        if record.status != "active":
            raise Conflict(
                f"It's not allowed to remove locations if image status is {record.status}."
            )
        held = _active(record)
        if len(held) == 1:
            raise Forbidden("Cannot remove last location in the image.")
        index = _position(pos, len(held), allow_end=False)
        if index is None:
            raise InvalidRequest("Invalid position for removing a location.")
        loc, service = held[index], self.imports.service
        store = service.stores.get(loc.store)
        if store is None or store.config.type != "http":
            service.delete_from_store(loc.store, record.id)  # and its data
            return service.get(record.id)
        # One of the http store's URLs: the others stay; the data is the URL's, not ours.
        return service.catalog.remove_location(
            record.id, loc.store, url=loc.url, expect_status=("active",)
        )

    def _replace(self, record: ImageRecord, value: Any) -> ImageRecord:
        if not isinstance(value, list) or not value:
            raise Forbidden("Cannot set locations to empty list.")
        if record.status not in ("active", "queued"):
            raise Conflict(
                f"It's not allowed to replace locations if image status is {record.status}."
            )
        held = _active(record)
        if not held:  # a queued image without data: the same as adding each
            for item in value:
                record = self._add(record, "-", item)
            return record
        _validation(record, value)
        wanted = [_location(item) for item in value]
        if [url for url, _ in wanted] != [loc.url for loc in held]:
            raise InvalidRequest(
                "Replacing locations may change their metadata only: the same URLs, in order"
            )
        catalog = self.imports.service.catalog
        for loc, (url, metadata) in zip(held, wanted, strict=True):
            if {"store": loc.store, **metadata} != loc.metadata:
                record = catalog.add_location(  # the row of this URL (one of several, if http)
                    record.id, Location(loc.store, url, "active", metadata), one_per_store=False
                )
        return record

    def _size(self, store: Store, url: str, image_id: str) -> int | None:
        """The data's size, as Glance asks the store: Content-Length, or the block image's."""
        try:
            if store.config.type == "http":
                with open_url(url, self.imports.policy) as fetched:
                    return fetched.size
            with store.open_snap(image_id) as image:
                return image.stat().size
        except FerryError as exc:  # Glance: the store could not find it (BadStoreUri)
            raise InvalidRequest(f"No image data could be found at {url}: {exc}") from exc


def _active(record: ImageRecord) -> list[Location]:
    return [loc for loc in record.locations if loc.status == "active"]


def _location(value: Any) -> tuple[str, dict[str, str]]:
    """A location object's URL and metadata (the image schema's rules)."""
    if not isinstance(value, Mapping) or not isinstance(value.get("url"), str):
        raise InvalidRequest("A location is an object with a 'url' string and 'metadata'")
    metadata = value.get("metadata", {})
    if not isinstance(metadata, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise InvalidRequest("A location's metadata is an object of strings")
    return value["url"], {k: v for k, v in metadata.items() if k != "store"}


def _position(pos: str | None, count: int, *, allow_end: bool) -> int | None:
    """Glance's position of ``/locations/<pos>``: a digit string or ``-``; None if invalid."""
    if pos is None:
        return None
    index = count if allow_end else count - 1
    if pos.isdigit():
        index = int(pos)
    elif pos != "-":
        return None
    if allow_end:
        return index if 0 <= index <= count else None
    return index if 0 <= index < count else None


def _validation(record: ImageRecord, values: list[Any]) -> dict[str, object]:
    """The hashes the new locations' ``validation_data`` gives the image (Glance's 409s)."""
    given: dict[str, Any] = {}
    for value in values:
        data = value.get("validation_data", {}) if isinstance(value, Mapping) else {}
        if not isinstance(data, Mapping) or set(data) - set(VALIDATION_KEYS):
            raise InvalidRequest(f"validation_data may only have {', '.join(VALIDATION_KEYS)}")
        for key, item in data.items():
            if given.get(key, item) != item:
                raise Conflict(f"Conflicting values for {key}")
            given[key] = item
    new = {}
    for key, item in given.items():
        current = getattr(record, key)
        if item == current:
            continue
        if current:
            raise Conflict(f"{key} is already set with a different value")
        new[key] = item
    if not new:
        return {}
    if record.status != "queued":
        raise Conflict(
            f"New value(s) for {', '.join(new)} may only be provided when image status is 'queued'"
        )
    if new.get("os_hash_algo") != "sha512":
        raise Conflict(f"os_hash_algo must be sha512, not {new.get('os_hash_algo')}")
    for key, size in DIGEST_BYTES.items():
        if key in new and not _hex_of(new[key], size):
            raise Conflict(f"{key} ({new[key]}) is not a valid {size}-byte hexadecimal value")
    if "os_hash_value" not in new:
        raise Conflict("os_hash_value must be given with os_hash_algo")
    return dict(new)


def _hex_of(value: object, size: int) -> bool:
    return (
        isinstance(value, str) and len(value) == 2 * size and not set(value) - set(string.hexdigits)
    )
