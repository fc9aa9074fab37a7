"""One site's services, opened together and closed together (the API's lifespan and
``ferry check`` both use them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from ferry.catalog import Catalog
from ferry.config import Config
from ferry.images import glance_download
from ferry.images.imports import Imports
from ferry.images.service import ImageService
from ferry.images.stores import Stores
from ferry.recovery import Heartbeat, Reconciler
from ferry.volumes import VolumeService


@dataclass(frozen=True)
class SiteServices:
    stores: Stores
    catalog: Catalog
    images: ImageService
    imports: Imports
    volumes: VolumeService
    reconciler: Reconciler


@contextmanager
def open_site(config: Config, site_name: str) -> Iterator[SiteServices]:
    """Connect the site's stores and catalogue (migrated), registered as a live holder."""
    site = config.site(site_name)
    stores = Stores(config, site_name)
    catalog = Catalog(config.catalog, stores.catalog_keys)
    try:
        catalog.migrate()
        heartbeat = Heartbeat(
            catalog, site_name, timedelta(seconds=site.recovery.holder_lease_seconds)
        )
        heartbeat.start()
        try:
            images = ImageService(catalog, stores, config.owner)
            imports = Imports(
                images,
                site_name,
                site.imports,
                max_image_size=site.limits.image_size_cap,
                regions=glance_download.regions(config, site_name),
            )
            volumes = VolumeService(config, site_name, images, imports)
            reconciler = Reconciler(site_name, images, imports, volumes, site.recovery)
            yield SiteServices(stores, catalog, images, imports, volumes, reconciler)
        finally:
            heartbeat.stop()
    finally:
        stores.close()
        catalog.close()
