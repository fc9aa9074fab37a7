"""Servers' storage side, as Nova's RBD image backend does it: a root disk
``vms/<id>_disk`` cloned from an image, or a boot volume; power state; an image of the disk."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid

from ferry import failpoints
from ferry.block import ImageSpec
from ferry.catalog import ImageRecord, ServerRecord
from ferry.catalog.resources import ServerStatus
from ferry.config import NOAUTH_PROJECT
from ferry.errors import Conflict, InvalidRequest, NotFound
from ferry.images.transfer import read_range
from ferry.volumes.undo import Undo
from ferry.volumes.volumes import Volumes
from ferry.volumes.zones import (
    VMS,
    VOLUMES,
    MissingImage,
    Zone,
    Zones,
    disk_name,
    remove_image,
    remove_snap,
    volume_name,
)


class Servers:
    """Boot, power and delete servers, and make images of their disks."""

    def __init__(self, zones: Zones, volumes: Volumes) -> None:
        self.zones = zones
        self.make_volume = volumes.create_volume
        self.servers, self.volumes = zones.servers, zones.volumes

    def create_server(
        self,
        *,
        name: str | None = None,
        availability_zone: str | None = None,
        image_id: str | None = None,
        volume_id: str | None = None,
        boot_volume_size: int | None = None,
        missing_image: MissingImage | None = None,
        project_id: str = NOAUTH_PROJECT,
        user_id: str | None = None,
    ) -> ServerRecord:
        """Boot (the storage side): a root disk cloned from an image, or a volume.

        ``volume_id`` boots from that volume; ``boot_volume_size`` (GiB) with an image makes
        the volume first, in the server's zone, or with cross_az_attach in the default zone.
        """
        if (image_id is None) == (volume_id is None):
            raise InvalidRequest("boot from exactly one of an image or a volume")
        if boot_volume_size is not None and image_id is None:
            raise InvalidRequest("--boot-from-volume needs an image to make the volume from")
        zone = self.zones.zone(availability_zone)
        record = ServerRecord(
            id=str(uuid.uuid4()),
            name=name,
            status="BUILD",
            availability_zone=zone.az,
            image_id=image_id,
            project_id=project_id,
            user_id=user_id,
        )
        if boot_volume_size is not None:
            cross_az = self.zones.compute.cross_az_attach
            volume = self.make_volume(
                size=boot_volume_size,
                availability_zone=self.zones.default_az if cross_az else zone.az,
                name=f"{name or record.id}-boot",
                image_id=image_id,
                missing_image=missing_image,
                project_id=project_id,
                user_id=user_id,
            )
            volume_id = volume.id
        if volume_id is not None:
            return self._boot_volume(zone, record, volume_id)
        assert image_id is not None
        image = self.zones.usable_image(image_id)
        spec = ImageSpec(VMS, disk_name(record.id))
        with Undo() as undo:
            self.servers.add(record)
            undo.add(self.servers.remove, record.id)
            undo.add(remove_image, zone.cluster, spec)  # whatever of it got made
            source = self.zones.from_image(zone, spec, image, None, missing_image)
            failpoints.reach("server.made")
            return self.servers.change(record.id, status="ACTIVE", image_source=source)

    def _boot_volume(self, zone: Zone, record: ServerRecord, volume_id: str) -> ServerRecord:
        """Attach the volume as the server's root disk (an ERROR server if it is in another
        zone, as a DCN edge's compute nodes cannot reach the default zone's storage)."""
        volume = self.volumes.get(volume_id)
        if volume.availability_zone != zone.az and not self.zones.compute.cross_az_attach:
            raise InvalidRequest(
                "Server and volumes are not in the same availability zone. "
                f"Server is in: {zone.az}. Volumes are in: {volume.availability_zone}"
            )
        record = dataclasses.replace(record, volume_id=volume_id)
        self.servers.add(record)
        if volume.availability_zone != zone.az:
            return self.servers.change(
                record.id,
                status="ERROR",
                fault=(
                    f"Volume {volume_id} is in availability zone {volume.availability_zone} "
                    f"but the instance is in {zone.az}: with cross_az_attach true a boot "
                    "volume is created in the default zone, whose storage the edge's "
                    "compute nodes do not reach. Set cross_az_attach false (the DCN "
                    "default) to create it in the instance's zone."
                ),
            )
        with Undo() as undo:
            undo.add(self.servers.remove, record.id)
            self.volumes.change(
                volume_id, expect=("available",), status="in-use", attached_to=record.id
            )
        return self.servers.change(record.id, status="ACTIVE")

    def set_power(self, server_id: str, *, on: bool) -> ServerRecord:
        """``server start`` (on) or ``server stop``; idempotent as Nova's are not, so clear."""
        want: ServerStatus
        was: ServerStatus
        want, was = ("ACTIVE", "SHUTOFF") if on else ("SHUTOFF", "ACTIVE")
        server = self.servers.get(server_id)
        if server.status == want:
            return server
        return self.servers.change(server_id, expect=(was,), status=want)

    def delete_server(self, server_id: str) -> None:
        """Marked DELETING first: if the process dies, the reconciler finishes the delete."""
        before = self.servers.get(server_id)
        with Undo() as undo:
            server = self.servers.change(server_id, status="DELETING")
            undo.add(self.servers.change, server_id, status=before.status)
            failpoints.reach("server.delete.marked")
            if server.volume_id is None:
                zone = self.zones.zone(server.availability_zone)
                with contextlib.suppress(NotFound):
                    remove_image(zone.cluster, ImageSpec(VMS, disk_name(server_id)))
            else:
                with contextlib.suppress(NotFound, Conflict):  # an ERROR one never attached it
                    self.volumes.change(
                        server.volume_id, expect=("in-use",), status="available", attached_to=None
                    )
        self.servers.remove(server_id)

    def create_server_image(self, server_id: str, name: str) -> ImageRecord:
        """``server image create``: the disk's data as a new image, in the zone's store only."""
        server = self.servers.get(server_id)
        if server.status not in ("ACTIVE", "SHUTOFF"):
            raise Conflict(f"Server {server_id} is {server.status}; it cannot be snapshotted")
        zone = self.zones.zone(server.availability_zone)
        if server.volume_id is None:
            spec = ImageSpec(VMS, disk_name(server_id))
        else:
            spec = ImageSpec(VOLUMES, volume_name(server.volume_id))
        image = self._new_image(server, name)
        with Undo() as undo:
            undo.add(self.zones.images.delete, image.id)
            # The image is saving (held by this process) before the disk has the snapshot
            # ``image-<id>``: the reconciler removes such a snapshot only once that hold ends.
            upload = self.zones.images.start_upload(image.id, zone.store.id, None)
            undo.add(upload.abort)
            snap = f"image-{image.id}"
            with zone.cluster.open(spec) as disk:
                disk.create_snap(snap)
            failpoints.reach("server_image.snapped")
            try:
                at = ImageSpec(spec.pool, spec.name, snap)
                with zone.cluster.open(at, read_only=True) as at_snap:
                    size = at_snap.stat().size
                    for chunk in read_range(at_snap, 0, size):
                        upload.feed(chunk)
            finally:  # while the image is still saving: the snapshot is ours to remove
                remove_snap(zone.cluster, spec, snap)
            return upload.finish()

    def _new_image(self, server: ServerRecord, name: str) -> ImageRecord:
        """The new image's record, with Nova's snapshot properties and its base's minimums."""
        base = self._base_image(server)
        return self.zones.images.create(
            {
                "name": name,
                "disk_format": "raw",
                "container_format": "bare",
                "min_disk": base.get("min_disk", 0),
                "min_ram": base.get("min_ram", 0),
                "image_type": "snapshot",
                "instance_uuid": server.id,
                "base_image_ref": server.image_id or "",
                "owner_specified.openstack.object": f"servers/{server.id}",
                "owner": server.project_id,  # the image belongs to the server's project
            }
        )

    def _base_image(self, server: ServerRecord) -> dict[str, int]:
        if server.image_id is None:
            return {}
        with contextlib.suppress(NotFound):
            image = self.zones.images.get(server.image_id)
            return {"min_disk": image.min_disk, "min_ram": image.min_ram}
        return {}
