"""Volumes (``volumes/volume-<id>``) and their snapshots (``@snapshot-<id>``), in a zone's
own cluster: from an image, a snapshot or another volume as a clone, or blank."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ferry import failpoints
from ferry.block import ImageSpec
from ferry.catalog import ImageRecord, SnapshotRecord, VolumeRecord
from ferry.config import NOAUTH_PROJECT
from ferry.errors import Conflict, InUse, InvalidRequest, NotFound
from ferry.volumes.undo import Undo
from ferry.volumes.zones import (
    VOLUMES,
    GiB,
    MissingImage,
    Zone,
    Zones,
    has_snap,
    not_now,
    remove_image,
    volume_name,
)

Make = Callable[[Zone, ImageSpec, int], dict[str, Any]]  # (zone, spec, bytes) -> what happened


@dataclass(frozen=True)
class Source:
    """What a new volume is made from: its least size (GiB), zone, boot data and maker."""

    least: int
    az: str | None
    make: Make
    source: dict[str, Any] = field(default_factory=dict)
    bootable: bool = False
    meta: dict[str, Any] | None = None


class Volumes:
    """Create and delete volumes and volume snapshots."""

    def __init__(self, zones: Zones) -> None:
        self.zones = zones
        self.volumes, self.snapshots = zones.volumes, zones.snapshots

    def create_volume(
        self,
        *,
        size: int | None = None,
        availability_zone: str | None = None,
        name: str | None = None,
        description: str | None = None,
        image_id: str | None = None,
        snapshot_id: str | None = None,
        source_volid: str | None = None,
        missing_image: MissingImage | None = None,
        project_id: str = NOAUTH_PROJECT,
        user_id: str | None = None,
    ) -> VolumeRecord:
        """A volume (size in GiB) from an image, a snapshot, another volume, or blank,
        owned by ``project_id``."""
        if sum(x is not None for x in (image_id, snapshot_id, source_volid)) > 1:
            raise InvalidRequest("give at most one source: an image, a snapshot or a volume")
        if snapshot_id is not None:
            src = self._from_snapshot(snapshot_id, availability_zone)
        elif source_volid is not None:
            src = self._from_volume(source_volid, availability_zone)
        elif image_id is not None:
            src = self._from_image(image_id, availability_zone, missing_image)
        elif size is None:
            raise InvalidRequest("a blank volume needs a size")
        else:
            src = Source(1, availability_zone, _blank)
        size = src.least if size is None else size
        if size < src.least:
            raise InvalidRequest(
                f"Volume size {size}GB cannot be smaller than its source's {src.least}GB"
            )
        zone = self.zones.zone(src.az)
        record = VolumeRecord(
            id=str(uuid.uuid4()),
            name=name,
            description=description,
            status="creating",
            size=size,
            availability_zone=zone.az,
            bootable=src.bootable,
            source=src.source,
            volume_image_metadata=src.meta,
            project_id=project_id,
            user_id=user_id,
        )
        spec = ImageSpec(VOLUMES, volume_name(record.id))
        with Undo() as undo:
            self.volumes.add(record)
            undo.add(self.volumes.remove, record.id)
            undo.add(remove_image, zone.cluster, spec)  # whatever of it got made
            made = src.make(zone, spec, size * GiB)
            failpoints.reach("volume.made")
            return self.volumes.change(record.id, status="available", source=src.source | made)

    def _from_snapshot(self, snapshot_id: str, az: str | None) -> Source:
        snap = self.snapshots.get(snapshot_id)
        if snap.status != "available":
            raise Conflict(f"Snapshot {snapshot_id} is {snap.status}, not available")
        parent = ImageSpec(VOLUMES, volume_name(snap.volume_id), f"snapshot-{snapshot_id}")
        return _from_origin(
            self.volumes.get(snap.volume_id),
            az,
            snap.size,
            lambda zone, spec, size: self.zones.clone(zone, parent, spec, size),
            {"snapshot_id": snapshot_id},
        )

    def _from_volume(self, source_volid: str, az: str | None) -> Source:
        origin = self.volumes.get(source_volid)
        if origin.status not in ("available", "in-use"):
            raise Conflict(f"Volume {source_volid} is {origin.status}; it cannot be cloned")
        return _from_origin(
            origin,
            az,
            origin.size,
            lambda zone, spec, size: self.zones.clone_volume(zone, source_volid, spec, size),
            {"source_volid": source_volid},
        )

    def _from_image(self, image_id: str, az: str | None, missing: MissingImage | None) -> Source:
        image = self.zones.usable_image(image_id)
        return Source(
            _image_gib(image),
            az,
            lambda zone, spec, size: self.zones.from_image(zone, spec, image, size, missing),
            {"image_id": image_id},
            bootable=True,
            meta=image_metadata(image),
        )

    def delete_volume(self, volume_id: str) -> None:
        volume = self.volumes.get(volume_id)
        if volume.status == "in-use":
            raise InUse(
                f"Volume {volume_id} is attached to server {volume.attached_to}; "
                "delete the server first"
            )
        snaps = self.snapshots.list(volume_id=volume_id)
        if snaps:
            raise InUse(
                f"Volume {volume_id} still has {len(snaps)} dependent snapshot(s) "
                f"({', '.join(s.id for s in snaps)}); delete them first"
            )
        zone = self.zones.zone(volume.availability_zone)
        spec = ImageSpec(VOLUMES, volume_name(volume_id))
        with Undo() as undo:
            self.volumes.change(volume_id, expect=("available", "error"), status="deleting")
            undo.add(self.volumes.change, volume_id, status=volume.status)
            failpoints.reach("volume.delete.marked")
            with contextlib.suppress(NotFound):
                remove_image(zone.cluster, spec)
        self.volumes.remove(volume_id)

    def create_snapshot(
        self,
        volume_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        force: bool = False,
    ) -> SnapshotRecord:
        volume = self.volumes.get(volume_id)
        allowed = ("available", "in-use") if force else ("available",)
        if volume.status not in allowed:
            raise Conflict(not_now(volume, "snapshotting"))
        zone = self.zones.zone(volume.availability_zone)
        record = SnapshotRecord(
            id=str(uuid.uuid4()),
            volume_id=volume_id,
            name=name,
            description=description,
            status="creating",
            size=volume.size,
            project_id=volume.project_id,  # a snapshot belongs where its volume does
        )
        snap = f"snapshot-{record.id}"
        with Undo() as undo:
            self.snapshots.add(record)
            undo.add(self.snapshots.remove, record.id)
            with zone.cluster.open(ImageSpec(VOLUMES, volume_name(volume_id))) as image:
                image.create_snap(snap)
                image.protect_snap(snap)
        return self.snapshots.change(record.id, status="available")

    def delete_snapshot(self, snapshot_id: str) -> None:
        record = self.snapshots.get(snapshot_id)
        volume = self.volumes.get(record.volume_id)
        zone = self.zones.zone(volume.availability_zone)
        snap = f"snapshot-{snapshot_id}"
        with zone.cluster.open(ImageSpec(VOLUMES, volume_name(volume.id))) as image:
            children = image.children(snap) if has_snap(image, snap) else []
            if children:
                raise InUse(
                    f"Snapshot {snapshot_id} has dependent volumes "
                    f"({', '.join(str(c) for c in children)}); delete them first"
                )
            with Undo() as undo:
                self.snapshots.change(snapshot_id, expect=("available", "error"), status="deleting")
                undo.add(self.snapshots.change, snapshot_id, status=record.status)
                if has_snap(image, snap):
                    image.unprotect_snap(snap)
                    image.remove_snap(snap)
        self.snapshots.remove(snapshot_id)


def _from_origin(
    origin: VolumeRecord, az: str | None, least: int, make: Make, source: dict[str, Any]
) -> Source:
    """A volume made from another volume or its snapshot: in that volume's zone, with its
    boot data."""
    if az not in (None, origin.availability_zone):
        raise InvalidRequest(
            f"Invalid availability zone {az}: a volume made from another "
            f"volume or its snapshot is in that volume's zone, "
            f"{origin.availability_zone}"
        )
    return Source(
        least,
        origin.availability_zone,
        make,
        source,
        bootable=origin.bootable,
        meta=origin.volume_image_metadata,
    )


def _blank(zone: Zone, spec: ImageSpec, size: int) -> dict[str, Any]:
    zone.cluster.create(spec.pool, spec.name, size)
    return {}


def image_metadata(image: ImageRecord) -> dict[str, str]:
    """Cinder's ``volume_image_metadata`` of a volume made from ``image`` (strings, as Cinder)."""
    fields = {
        "image_id": image.id,
        "image_name": image.name,
        "checksum": image.checksum,
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "size": image.size,
        "min_disk": image.min_disk,
        "min_ram": image.min_ram,
    }
    return {k: str(v) for k, v in fields.items() if v is not None}


def _image_gib(image: ImageRecord) -> int:
    data = image.virtual_size or image.size or 0
    return max(-(-data // GiB), image.min_disk, 1)
