"""glance-download: an image filled from another image of the cloud, with its metadata.

Glance finds the source Glance in Keystone's catalogue by ``glance_region`` and
``glance_service_interface`` and fetches the image's metadata and data over HTTP with the
caller's token. ferry does it without HTTP: the sites of one deployment share one catalogue,
and each site's Keystone section names its region, so a region of this deployment (or, with
noauth, this site's own name) means "an image of this catalogue". Every site's API serves all
three interfaces, so any of them is accepted.

What Glance checks when the request comes (a non-UUID id: 400) is checked then; what Glance
only finds once its task runs (a region or interface it cannot reach, a source image the
caller cannot see) is checked then too, since the worker has no caller, and recorded in the
task's input (never a token): the task fails with it and the image goes back to ``queued``.

The job is copy-image's copy phase with another image as its source: the source's data, from
a store of this site that holds it, goes to every target store in one read (sparse,
sha512-verified against the source's ``os_hash_value``, resumable from its checkpoint). The
image becomes ``active`` with its first location, in the same transaction that gives it the
source's checksum, hashes, sizes, disk and container formats and the properties whose names
start with one of ``EXTRA_PROPERTIES`` (Glance's ``[glance_download_properties]`` default),
replacing conflicting values. Until that commit the image's own properties are untouched, so
a failure, or a crash and the reconciler's ``importing`` → ``queued``, leaves them as they were.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ferry.catalog import Catalog, ImageRecord
from ferry.config import Config
from ferry.errors import Conflict, IntegrityError, InvalidRequest, NotFound
from ferry.identity.catalog import DEFAULT_REGION
from ferry.identity.context import Context
from ferry.images.access import ImageAccess
from ferry.images.stores import Store, Stores

METHOD = "glance-download"
INPUT = "glance_download"  # the task input's section
INTERFACES = ("public", "internal", "admin")
# Glance's [glance_download_properties] extra_properties default: name prefixes copied over.
EXTRA_PROPERTIES = ("hw_", "trait:", "os_distro", "os_secure_boot", "os_type")


def regions(config: Config, site_name: str) -> frozenset[str]:
    """The regions a glance-download may name: every Keystone site's region, as the catalogue
    registers it (``identity.catalog.plan``), and with noauth this site's own name."""
    found = {site_name} if config.site_auth(site_name).mode == "noauth" else set()
    deployment = config.auth.keystone.region if config.auth.keystone else None
    for name in config.sites:
        auth = config.site_auth(name)
        if auth.mode == "keystone" and auth.keystone is not None:
            found.add(auth.keystone.region or deployment or DEFAULT_REGION)
        elif name == site_name and auth.keystone is not None and auth.keystone.region:
            found.add(auth.keystone.region)
    return frozenset(found)


def check(
    body: Mapping[str, Any], ctx: Context, access: ImageAccess, known: frozenset[str]
) -> dict[str, str]:
    """The request's source as the job needs it; InvalidRequest if its id is not a UUID.

    A region or interface this deployment does not have, or a source the caller cannot see,
    is the job's ``error``: Glance accepts such a request and its task fails.
    """
    method = body.get("method")
    params = method if isinstance(method, Mapping) else {}
    try:
        image_id = str(uuid.UUID(str(params.get("glance_image_id"))))
    except ValueError as exc:
        raise InvalidRequest("image id does not look like a UUID") from exc
    region = str(params.get("glance_region"))
    interface = str(params.get("glance_service_interface", "public"))
    source = {"image_id": image_id, "region": region, "interface": interface}
    if region not in known:
        regions_ = ", ".join(sorted(known)) or "none"
        source["error"] = f"no image service in region {region!r} (this cloud's: {regions_})"
    elif interface not in INTERFACES:
        source["error"] = f"no image service endpoint with interface {interface!r}"
    else:
        try:
            access.fetch(ctx, image_id)
        except NotFound:
            source["error"] = f"image {image_id} not found in region {region}"
    return source


@dataclass(frozen=True)
class Origin:
    """A glance-download's source image, and a store of this site holding its data."""

    record: ImageRecord
    store: Store

    @classmethod
    def find(cls, catalog: Catalog, stores: Stores, site: str, source: Mapping[str, Any]) -> Origin:
        """The source named by the task's input; the task's failure if it cannot be used."""
        if source.get("error"):
            raise NotFound(f"glance-download: {source['error']}")
        image_id = source.get("image_id")
        if not isinstance(image_id, str):
            raise InvalidRequest("glance-download: the task names no source image")
        try:
            record = catalog.get_image(image_id)
        except NotFound as exc:
            raise NotFound(f"glance-download: image {image_id} not found") from exc
        if record.status != "active" or not record.os_hash_value:
            raise Conflict(
                f"glance-download: image {image_id} is {record.status}, not active with data"
            )
        default = stores.default.id
        for store_id in sorted(record.stores, key=lambda s: s != default):
            store = stores.get(store_id)
            if store is not None and store.config.type != "http":
                return cls(record, store)
        raise NotFound(f"glance-download: no store of site {site} holds image {image_id}")

    def activation(self, sha512: str) -> dict[str, Any]:
        """``add_location``'s arguments that make the destination the source's copy."""
        src = self.record
        if src.os_hash_algo not in (None, "sha512") or sha512 != src.os_hash_value:
            raise IntegrityError(f"the copy of image {src.id} does not hash to its os_hash_value")
        fields = {
            "status": "active",
            "size": src.size,
            "virtual_size": src.virtual_size,
            "checksum": src.checksum,
            "os_hash_algo": src.os_hash_algo,
            "os_hash_value": src.os_hash_value,
            "disk_format": src.disk_format,
            "container_format": src.container_format,
        }
        props = {k: v for k, v in src.properties.items() if k.startswith(EXTRA_PROPERTIES)}
        return {"expect_status": ("importing",), "fields": fields, "set_properties": props}
