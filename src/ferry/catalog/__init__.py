"""ferry's catalogue: the one place with SQL (images, properties, tags, locations, tasks)."""

from ferry.catalog.catalog import Catalog
from ferry.catalog.records import ImageRecord, Location, TaskRecord

__all__ = ["Catalog", "ImageRecord", "Location", "TaskRecord"]
