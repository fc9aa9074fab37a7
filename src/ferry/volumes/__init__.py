"""Volumes, volume snapshots, instances' disks and backups (the storage side of Cinder/Nova)."""

from ferry.volumes.service import VolumeService, Zone

__all__ = ["VolumeService", "Zone"]
