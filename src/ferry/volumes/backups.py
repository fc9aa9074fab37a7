"""Backups in the central site's ``backups`` pool.

The first backup of a volume is a full copy into ``backups/volume-<id>.backup.<first-id>``;
later ones write only the extents changed since the previous backup's snapshot of the volume.
Each backup is a snapshot of that block image, so any one restores (or is deleted) on its own.
The volume keeps one backup snapshot, the newest: the next incremental's starting point.
"""

from __future__ import annotations

import contextlib
import uuid

from ferry import failpoints
from ferry.block import ImageSpec
from ferry.block.ops import apply_diff, copy_image
from ferry.catalog import BackupRecord, VolumeRecord
from ferry.catalog.resources import VolumeStatus
from ferry.errors import Conflict, FerryError, Forbidden, NotFound
from ferry.volumes.undo import Undo
from ferry.volumes.zones import (
    BACKUPS,
    VOLUMES,
    GiB,
    Zone,
    Zones,
    has_snap,
    not_now,
    remove_image,
    remove_snap,
    volume_name,
)


class Backups:
    """Create, restore and delete backups of volumes."""

    def __init__(self, zones: Zones) -> None:
        self.zones = zones
        self.backups, self.volumes = zones.backups, zones.volumes

    def create_backup(
        self, volume_id: str, *, name: str | None = None, force: bool = False
    ) -> BackupRecord:
        """Back the volume up to central's backups pool: in full the first time, then only
        the extents changed since the last backup."""
        volume = self.volumes.get(volume_id)
        allowed: tuple[VolumeStatus, ...] = ("available", "in-use") if force else ("available",)
        if volume.status not in allowed:
            raise Conflict(not_now(volume, "backing up"))
        target = self.zones.zone(self.zones.default_az)
        zone = self.zones.zone(volume.availability_zone)
        backup_id = str(uuid.uuid4())
        previous = self._chain_head(zone, target, volume_id)
        record = BackupRecord(
            id=backup_id,
            volume_id=volume_id,
            name=name,
            status="creating",
            size=volume.size,
            availability_zone=target.az,
            base=previous.base if previous else f"{volume_name(volume_id)}.backup.{backup_id}",
            is_incremental=previous is not None,
            source_snap=f"backup.{backup_id}",
            project_id=volume.project_id,
        )
        try:
            with Undo() as undo:
                self.backups.add(record)
                undo.add(self.backups.remove, backup_id)
                self.volumes.change(volume_id, expect=allowed, status="backing-up")
                undo.add(self.volumes.change, volume_id, status=volume.status)
                moved = self._copy(undo, zone, target, record, previous)
        except Forbidden as exc:
            raise Forbidden(
                f"{exc}. Backups go to the central site's backups pool: make them "
                f"through the API of {self.zones.config.central or 'that site'}, whose client "
                "may write there"
            ) from exc
        vspec = ImageSpec(VOLUMES, volume_name(volume_id))
        if previous is not None:  # the volume keeps one backup snapshot: the newest
            with contextlib.suppress(FerryError):
                remove_snap(zone.cluster, vspec, previous.source_snap)
        self.volumes.change(volume_id, status=volume.status)
        return self.backups.change(backup_id, status="available", moved=moved)

    @staticmethod
    def _copy(
        undo: Undo, zone: Zone, target: Zone, record: BackupRecord, previous: BackupRecord | None
    ) -> int:
        """Snapshot the volume and write it, or what changed since ``previous``, into the
        backup's base, then snapshot that. Returns the bytes read."""
        vspec = ImageSpec(VOLUMES, volume_name(record.volume_id))
        snap = record.source_snap
        with zone.cluster.open(vspec) as image:
            image.create_snap(snap)
        undo.add(remove_snap, zone.cluster, vspec, snap)
        failpoints.reach("backup.snapped")
        if previous is None:
            target.cluster.create(BACKUPS, record.base, record.size * GiB)
            undo.add(target.cluster.remove, BACKUPS, record.base)
        with (  # through the stores, so /metrics counts what crosses sites
            zone.store.open(ImageSpec(VOLUMES, vspec.name, snap)) as src,
            target.store.open(ImageSpec(BACKUPS, record.base)) as dst,
        ):
            since = previous.source_snap if previous else None
            moved = apply_diff(src, dst, src.diff(since))
            failpoints.reach("backup.copied")
            dst.create_snap(snap)
        return moved

    def _chain_head(self, zone: Zone, target: Zone, volume_id: str) -> BackupRecord | None:
        """The newest available backup an incremental can follow: its snapshot of the volume
        and its base image both still exist."""
        for backup in self.backups.list(volume_id=volume_id):
            if backup.status != "available":
                continue
            try:
                with zone.cluster.open(ImageSpec(VOLUMES, volume_name(volume_id))) as image:
                    if not has_snap(image, backup.source_snap):
                        return None
                with target.cluster.open(ImageSpec(BACKUPS, backup.base)) as base:
                    return backup if has_snap(base, backup.source_snap) else None
            except NotFound:
                return None
        return None

    def restore_backup(
        self, backup_id: str, *, name: str | None = None, availability_zone: str | None = None
    ) -> VolumeRecord:
        """A new volume holding the backup's data (in the backed-up volume's zone by default)."""
        backup = self.backups.get(backup_id)
        if backup.status != "available":
            raise Conflict(f"Backup {backup_id} is {backup.status}, not available")
        bootable, meta = False, None
        with contextlib.suppress(NotFound):
            origin = self.volumes.get(backup.volume_id)
            availability_zone = availability_zone or origin.availability_zone
            bootable, meta = origin.bootable, origin.volume_image_metadata
        zone = self.zones.zone(availability_zone)
        target = self.zones.zone(backup.availability_zone)
        record = VolumeRecord(
            id=str(uuid.uuid4()),
            name=name or f"restore-{backup_id}",
            description=None,
            status="restoring-backup",
            size=backup.size,
            availability_zone=zone.az,
            bootable=bootable,
            source={"backup_id": backup_id},
            volume_image_metadata=meta,
            project_id=backup.project_id,
        )
        spec = ImageSpec(VOLUMES, volume_name(record.id))
        with Undo() as undo:
            self.volumes.add(record)
            undo.add(self.volumes.remove, record.id)
            self.backups.change(backup_id, expect=("available",), status="restoring")
            undo.add(remove_image, zone.cluster, spec)  # whatever of it got made
            try:
                with target.store.open(ImageSpec(BACKUPS, backup.base, backup.source_snap)) as src:
                    copy_image(src, zone.cluster, VOLUMES, spec.name)
                return self.volumes.change(record.id, status="available")
            finally:
                self.backups.change(backup_id, status="available")

    def delete_backup(self, backup_id: str) -> None:
        backup = self.backups.get(backup_id)
        with Undo() as undo:
            self.backups.change(backup_id, expect=("available", "error"), status="deleting")
            undo.add(self.backups.change, backup_id, status=backup.status)
            target = self.zones.zone(backup.availability_zone)
            with contextlib.suppress(NotFound):
                remove_snap(target.cluster, ImageSpec(BACKUPS, backup.base), backup.source_snap)
            others = [b for b in self.backups.list(base=backup.base) if b.id != backup_id]
            if not others:
                with contextlib.suppress(NotFound):
                    target.cluster.remove(BACKUPS, backup.base)
        with contextlib.suppress(FerryError):  # the volume's own snapshot for this backup
            volume = self.volumes.get(backup.volume_id)
            zone = self.zones.zone(volume.availability_zone)
            vspec = ImageSpec(VOLUMES, volume_name(volume.id))
            remove_snap(zone.cluster, vspec, backup.source_snap)
        self.backups.remove(backup_id)
