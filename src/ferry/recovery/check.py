"""``ferry check``: every catalogue location against its store, then what a reconcile pass
would do (or, with repair, does)."""

from __future__ import annotations

import hashlib

from ferry.block import BlockImage
from ferry.errors import FerryError, NotFound
from ferry.images.service import ImageService
from ferry.images.transfer import read_range
from ferry.recovery.reconciler import Report
from ferry.services import SiteServices


def verify_locations(images: ImageService, *, deep: bool) -> list[str]:
    """Problems with the locations of every image in the stores this site reaches.

    Each location's ``images/<id>@snap`` must exist and be as large as the image; with
    ``deep``, its bytes must hash to the image's ``os_hash_value``.
    """
    problems: list[str] = []
    marker = None
    while page := images.catalog.list_images(
        filters={"visibility": "all"}, sort=(("created_at", "asc"),), marker=marker, limit=200
    ):
        marker = page[-1].id
        for image in page:
            for loc in image.locations:
                store = images.stores.get(loc.store)
                if store is None or loc.status != "active" or store.config.type == "http":
                    continue  # an http store's data is at its URLs, not in a block image
                where = f"image {image.id} in store {loc.store}"
                try:
                    problem = _verify(store.open_snap(image.id), image.size, image.os_hash_value,
                                      deep=deep)  # fmt: skip
                except NotFound:
                    problem = "its block image is missing"
                except FerryError as exc:
                    problem = f"cannot be read: {exc}"
                if problem:
                    problems.append(f"{where}: {problem}")
    return problems


def _verify(snap: BlockImage, size: int | None, sha512: str | None, *, deep: bool) -> str | None:
    with snap as image:
        actual = image.stat().size
        if actual != size:
            return f"its data is {actual} bytes, the image {size}"
        if not deep:
            return None
        digest = hashlib.sha512()
        for chunk in read_range(image, 0, actual):
            digest.update(chunk)
        if digest.hexdigest() != sha512:
            return "its data does not hash to the image's os_hash_value"
    return None


def check(services: SiteServices, *, deep: bool, repair: bool) -> tuple[list[str], Report]:
    """Location problems, and the reconcile pass's report (found, or done with repair)."""
    problems = verify_locations(services.images, deep=deep)
    return problems, services.reconciler.run(repair=repair)
