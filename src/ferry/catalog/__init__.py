"""ferry's catalogue: the one place with SQL (images, properties, tags, locations, tasks)."""

from ferry.catalog.catalog import Catalog
from ferry.catalog.records import ImageRecord, Location, TaskRecord
from ferry.catalog.resources import BackupRecord, ServerRecord, SnapshotRecord, VolumeRecord

__all__ = [
    "BackupRecord",
    "Catalog",
    "ImageRecord",
    "Location",
    "ServerRecord",
    "SnapshotRecord",
    "TaskRecord",
    "VolumeRecord",
]
