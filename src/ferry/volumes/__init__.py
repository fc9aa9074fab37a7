"""Volumes, volume snapshots, instances' disks and backups (the storage side of Cinder/Nova)."""

from ferry.volumes.service import VolumeService
from ferry.volumes.zones import Zone

__all__ = ["VolumeService", "Zone"]
