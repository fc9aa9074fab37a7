"""Cinder's and Nova's storage side, in each availability zone's own cluster.

A volume is ``volumes/volume-<id>``, a server's root disk ``vms/<id>_disk``; both are
copy-on-write clones of ``images/<image-id>@snap`` in the zone's cluster (or of a volume
snapshot, ``volumes/volume-<id>@snapshot-<id>``). A clone deeper than ``max_clone_depth`` is
flattened at creation. An image the zone's store lacks is, by the site's ``missing_image``
policy, copied there once and then cloned (``copy``), streamed into a full uncached disk
(``stream``) or refused (``refuse``); every volume and server says which happened.

Backups live in the central site's ``backups`` pool: the first of a volume is a full copy into
``backups/volume-<id>.backup.<first-backup-id>``, later ones write only the extents that
changed since the previous backup's snapshot of the volume, and each backup is a snapshot of
that block image, so any one of them restores (or is deleted) on its own.

Every operation records its row first (``creating``), does the block work, then marks it done;
a failure removes what it made and the row, and raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ferry.block import BlockImage, Cluster, ImageSpec
from ferry.block.ops import apply_diff, copy_image
from ferry.catalog import BackupRecord, ImageRecord, ServerRecord, SnapshotRecord, VolumeRecord
from ferry.config import Config
from ferry.errors import Conflict, FerryError, Forbidden, InUse, InvalidRequest, NotFound
from ferry.images.imports import Imports
from ferry.images.service import ImageService
from ferry.images.stores import Store
from ferry.images.transfer import read_range

log = logging.getLogger(__name__)

GiB = 1 << 30
VOLUMES, VMS, BACKUPS = "volumes", "vms", "backups"
MissingImage = Literal["copy", "stream", "refuse"]


def volume_name(volume_id: str) -> str:
    return f"volume-{volume_id}"


def disk_name(server_id: str) -> str:
    return f"{server_id}_disk"


@dataclass(frozen=True)
class Zone:
    """An availability zone as this site reaches it: its site, and this site's store on the
    zone's cluster (whose connection, as that store's client, makes the zone's volumes)."""

    az: str
    site: str
    store: Store

    @property
    def cluster(self) -> Cluster:
        return self.store.cluster


class VolumeService:
    """Volumes, snapshots, servers' disks and backups, as one site serves them."""

    def __init__(self, config: Config, site: str, images: ImageService, imports: Imports) -> None:
        self.config = config
        self.site = site
        self.compute = config.site(site).compute
        self.images = images
        self.imports = imports
        catalog = images.catalog
        self.volumes, self.snapshots = catalog.volumes, catalog.snapshots
        self.servers, self.backups = catalog.servers, catalog.backups

    # --- zones -----------------------------------------------------------------------------
    def zone(self, az: str | None = None) -> Zone:
        """The zone ``az`` (default: this site's), through a store of this site on its cluster."""
        az = az or self.config.az(self.site)
        site = self.config.zone_site(az)
        cluster = self.config.own_cluster(site)
        stores = sorted(self.images.stores, key=lambda s: not s.config.default)
        for store in stores:
            if store.ref.cluster_name == cluster and not store.config.read_only:
                return Zone(az, site, store)
        where = "" if site == self.site else f"; use site {site}'s API"
        raise InvalidRequest(
            f"availability zone {az} is not reachable from site {self.site}: none of its "
            f"stores is on cluster {cluster}{where}"
        )

    @property
    def default_az(self) -> str:
        """Cinder's default_availability_zone: the central site's zone (else this site's)."""
        return self.config.az(self.config.central or self.site)

    # --- volumes ---------------------------------------------------------------------------
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
    ) -> VolumeRecord:
        """A volume (size in GiB) from an image, a snapshot, another volume, or blank."""
        if sum(x is not None for x in (image_id, snapshot_id, source_volid)) > 1:
            raise InvalidRequest("give at most one source: an image, a snapshot or a volume")
        bootable, meta, source = False, None, {}
        if snapshot_id is not None:
            snap = self.snapshots.get(snapshot_id)
            if snap.status != "available":
                raise Conflict(f"Snapshot {snapshot_id} is {snap.status}, not available")
            origin = self.volumes.get(snap.volume_id)
            least, source = snap.size, {"snapshot_id": snapshot_id}
        elif source_volid is not None:
            origin = self.volumes.get(source_volid)
            if origin.status not in ("available", "in-use"):
                raise Conflict(f"Volume {source_volid} is {origin.status}; it cannot be cloned")
            least, source = origin.size, {"source_volid": source_volid}
        if snapshot_id is not None or source_volid is not None:
            if availability_zone not in (None, origin.availability_zone):
                raise InvalidRequest(
                    f"Invalid availability zone {availability_zone}: a volume made from another "
                    f"volume or its snapshot is in that volume's zone, "
                    f"{origin.availability_zone}"
                )
            availability_zone = origin.availability_zone
            bootable, meta = origin.bootable, origin.volume_image_metadata
        elif image_id is not None:
            image = self._usable_image(image_id)
            least, source = _image_gib(image), {"image_id": image_id}
            bootable, meta = True, image_metadata(image)
        else:
            if size is None:
                raise InvalidRequest("a blank volume needs a size")
            least = 1
        size = least if size is None else size
        if size < least:
            raise InvalidRequest(
                f"Volume size {size}GB cannot be smaller than its source's {least}GB"
            )
        zone = self.zone(availability_zone)
        record = VolumeRecord(
            id=str(uuid.uuid4()),
            name=name,
            description=description,
            status="creating",
            size=size,
            availability_zone=zone.az,
            bootable=bootable,
            source=source,
            volume_image_metadata=meta,
        )
        self.volumes.add(record)
        spec = ImageSpec(VOLUMES, volume_name(record.id))
        with self._undo_on_failure(zone, spec, record.id, self.volumes.remove):
            if image_id is not None:
                source |= self._from_image(zone, spec, image, size * GiB, missing_image)
            elif snapshot_id is not None:
                parent = ImageSpec(VOLUMES, volume_name(snap.volume_id), f"snapshot-{snapshot_id}")
                source |= self._clone(zone, parent, spec, size * GiB)
            elif source_volid is not None:
                source |= self._clone_volume(zone, source_volid, spec, size * GiB)
            else:
                zone.cluster.create(VOLUMES, spec.name, size * GiB)
            return self.volumes.change(record.id, status="available", source=source)

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
        zone = self.zone(volume.availability_zone)
        spec = ImageSpec(VOLUMES, volume_name(volume_id))
        self.volumes.change(volume_id, expect=("available", "error"), status="deleting")
        try:
            _remove_image(zone.cluster, spec)
        except NotFound:
            pass
        except BaseException:
            self.volumes.change(volume_id, status=volume.status)
            raise
        self.volumes.remove(volume_id)

    # --- snapshots -------------------------------------------------------------------------
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
            raise Conflict(_not_now(volume, "snapshotting"))
        record = SnapshotRecord(
            id=str(uuid.uuid4()),
            volume_id=volume_id,
            name=name,
            description=description,
            status="creating",
            size=volume.size,
        )
        self.snapshots.add(record)
        snap = f"snapshot-{record.id}"
        zone = self.zone(volume.availability_zone)
        try:
            with zone.cluster.open(ImageSpec(VOLUMES, volume_name(volume_id))) as image:
                image.create_snap(snap)
                image.protect_snap(snap)
        except BaseException:
            self.snapshots.remove(record.id)
            raise
        return self.snapshots.change(record.id, status="available")

    def delete_snapshot(self, snapshot_id: str) -> None:
        record = self.snapshots.get(snapshot_id)
        volume = self.volumes.get(record.volume_id)
        zone = self.zone(volume.availability_zone)
        snap = f"snapshot-{snapshot_id}"
        with zone.cluster.open(ImageSpec(VOLUMES, volume_name(volume.id))) as image:
            children = image.children(snap) if _has_snap(image, snap) else []
            if children:
                raise InUse(
                    f"Snapshot {snapshot_id} has dependent volumes "
                    f"({', '.join(str(c) for c in children)}); delete them first"
                )
            self.snapshots.change(snapshot_id, expect=("available", "error"), status="deleting")
            try:
                if _has_snap(image, snap):
                    image.unprotect_snap(snap)
                    image.remove_snap(snap)
            except BaseException:
                self.snapshots.change(snapshot_id, status=record.status)
                raise
        self.snapshots.remove(snapshot_id)

    # --- servers ---------------------------------------------------------------------------
    def create_server(
        self,
        *,
        name: str | None = None,
        availability_zone: str | None = None,
        image_id: str | None = None,
        volume_id: str | None = None,
        boot_volume_size: int | None = None,
        missing_image: MissingImage | None = None,
    ) -> ServerRecord:
        """Boot (the storage side): a root disk cloned from an image, or a volume.

        ``volume_id`` boots from that volume; ``boot_volume_size`` (GiB) with an image makes
        the volume first, in the server's zone, or with cross_az_attach in the default zone.
        """
        if (image_id is None) == (volume_id is None):
            raise InvalidRequest("boot from exactly one of an image or a volume")
        if boot_volume_size is not None and image_id is None:
            raise InvalidRequest("--boot-from-volume needs an image to make the volume from")
        zone = self.zone(availability_zone)
        record = ServerRecord(
            id=str(uuid.uuid4()),
            name=name,
            status="BUILD",
            availability_zone=zone.az,
            image_id=image_id,
        )
        if boot_volume_size is not None:
            volume_az = self.default_az if self.compute.cross_az_attach else zone.az
            volume = self.create_volume(
                size=boot_volume_size,
                availability_zone=volume_az,
                name=f"{name or record.id}-boot",
                image_id=image_id,
                missing_image=missing_image,
            )
            volume_id = volume.id
        if volume_id is not None:
            volume = self.volumes.get(volume_id)
            if volume.availability_zone != zone.az and not self.compute.cross_az_attach:
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
            try:
                self.volumes.change(
                    volume_id, expect=("available",), status="in-use", attached_to=record.id
                )
            except BaseException:
                self.servers.remove(record.id)
                raise
            return self.servers.change(record.id, status="ACTIVE")
        assert image_id is not None
        image = self._usable_image(image_id)
        self.servers.add(record)
        spec = ImageSpec(VMS, disk_name(record.id))
        with self._undo_on_failure(zone, spec, record.id, self.servers.remove):
            source = self._from_image(zone, spec, image, None, missing_image)
            return self.servers.change(record.id, status="ACTIVE", image_source=source)

    def set_power(self, server_id: str, *, on: bool) -> ServerRecord:
        """``server start`` (on) or ``server stop``; idempotent as Nova's are not, so clear."""
        want, was = ("ACTIVE", "SHUTOFF") if on else ("SHUTOFF", "ACTIVE")
        server = self.servers.get(server_id)
        if server.status == want:
            return server
        return self.servers.change(server_id, expect=(was,), status=want)

    def delete_server(self, server_id: str) -> None:
        server = self.servers.get(server_id)
        if server.volume_id is None:
            zone = self.zone(server.availability_zone)
            with contextlib.suppress(NotFound):
                _remove_image(zone.cluster, ImageSpec(VMS, disk_name(server_id)))
        else:
            with contextlib.suppress(NotFound, Conflict):  # an ERROR server never attached it
                self.volumes.change(
                    server.volume_id, expect=("in-use",), status="available", attached_to=None
                )
        self.servers.remove(server_id)

    def create_server_image(self, server_id: str, name: str) -> ImageRecord:
        """``server image create``: the disk's data as a new image, in the zone's store only."""
        server = self.servers.get(server_id)
        if server.status not in ("ACTIVE", "SHUTOFF"):
            raise Conflict(f"Server {server_id} is {server.status}; it cannot be snapshotted")
        zone = self.zone(server.availability_zone)
        if server.volume_id is None:
            spec = ImageSpec(VMS, disk_name(server_id))
        else:
            spec = ImageSpec(VOLUMES, volume_name(server.volume_id))
        base = self._base_image(server)
        image = self.images.create(
            {
                "name": name,
                "disk_format": "raw",
                "container_format": "bare",
                "min_disk": base.get("min_disk", 0),
                "min_ram": base.get("min_ram", 0),
                "image_type": "snapshot",
                "instance_uuid": server_id,
                "base_image_ref": server.image_id or "",
                "owner_specified.openstack.object": f"servers/{server_id}",
            }
        )
        snap = f"image-{image.id}"
        try:
            with zone.cluster.open(spec) as disk:
                disk.create_snap(snap)
            try:
                at_snap = zone.cluster.open(ImageSpec(spec.pool, spec.name, snap), read_only=True)
                size = at_snap.stat().size
                upload = self.images.start_upload(image.id, zone.store.id, size)
                try:
                    for chunk in read_range(at_snap, 0, size):
                        upload.feed(chunk)
                    return upload.finish()
                except BaseException:
                    upload.abort()
                    raise
            finally:
                with zone.cluster.open(spec) as disk:
                    disk.remove_snap(snap)
        except BaseException:
            with contextlib.suppress(FerryError):
                self.images.delete(image.id)
            raise

    # --- backups ---------------------------------------------------------------------------
    def create_backup(
        self, volume_id: str, *, name: str | None = None, force: bool = False
    ) -> BackupRecord:
        """Back the volume up to central's backups pool: in full the first time, then only
        the extents changed since the last backup."""
        volume = self.volumes.get(volume_id)
        allowed = ("available", "in-use") if force else ("available",)
        if volume.status not in allowed:
            raise Conflict(_not_now(volume, "backing up"))
        target = self.zone(self.default_az)
        zone = self.zone(volume.availability_zone)
        vspec = ImageSpec(VOLUMES, volume_name(volume_id))
        backup_id = str(uuid.uuid4())
        snap = f"backup.{backup_id}"
        previous = self._chain_head(zone, target, volume_id)
        base = previous.base if previous else f"{vspec.name}.backup.{backup_id}"
        record = BackupRecord(
            id=backup_id,
            volume_id=volume_id,
            name=name,
            status="creating",
            size=volume.size,
            availability_zone=target.az,
            base=base,
            is_incremental=previous is not None,
            source_snap=snap,
        )
        self.backups.add(record)
        self.volumes.change(volume_id, expect=allowed, status="backing-up")
        try:
            with zone.cluster.open(vspec) as image:
                image.create_snap(snap)
            if previous is None:
                target.cluster.create(BACKUPS, base, volume.size * GiB)
            with (  # through the stores, so /metrics counts what crosses sites
                zone.store.open(ImageSpec(VOLUMES, vspec.name, snap)) as src,
                target.store.open(ImageSpec(BACKUPS, base)) as dst,
            ):
                since = previous.source_snap if previous else None
                moved = apply_diff(src, dst, src.diff(since))
                dst.create_snap(snap)
        except BaseException as exc:
            with contextlib.suppress(FerryError), zone.cluster.open(vspec) as image:
                if _has_snap(image, snap):
                    image.remove_snap(snap)
            if previous is None:
                with contextlib.suppress(FerryError):
                    target.cluster.remove(BACKUPS, base)
            self.backups.remove(backup_id)
            self.volumes.change(volume_id, status=volume.status)
            if isinstance(exc, Forbidden):
                raise Forbidden(
                    f"{exc}. Backups go to the central site's backups pool: make them "
                    f"through the API of {self.config.central or 'that site'}, whose client "
                    "may write there"
                ) from exc
            raise
        if previous is not None:  # the volume keeps one backup snapshot: the newest
            with contextlib.suppress(FerryError), zone.cluster.open(vspec) as image:
                image.remove_snap(previous.source_snap)
        self.volumes.change(volume_id, status=volume.status)
        return self.backups.change(backup_id, status="available", moved=moved)

    def _chain_head(self, zone: Zone, target: Zone, volume_id: str) -> BackupRecord | None:
        """The newest available backup an incremental can follow: its snapshot of the volume
        and its base image both still exist."""
        for backup in self.backups.list(volume_id=volume_id):
            if backup.status != "available":
                continue
            try:
                with zone.cluster.open(ImageSpec(VOLUMES, volume_name(volume_id))) as image:
                    if not _has_snap(image, backup.source_snap):
                        return None
                with target.cluster.open(ImageSpec(BACKUPS, backup.base)) as base:
                    return backup if _has_snap(base, backup.source_snap) else None
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
        zone = self.zone(availability_zone)
        target = self.zone(backup.availability_zone)
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
        )
        self.volumes.add(record)
        spec = ImageSpec(VOLUMES, volume_name(record.id))
        self.backups.change(backup_id, expect=("available",), status="restoring")
        try:
            with self._undo_on_failure(zone, spec, record.id, self.volumes.remove):
                at = ImageSpec(BACKUPS, backup.base, backup.source_snap)
                with target.store.open(at) as src:
                    copy_image(src, zone.cluster, VOLUMES, spec.name)
                return self.volumes.change(record.id, status="available")
        finally:
            self.backups.change(backup_id, status="available")

    def delete_backup(self, backup_id: str) -> None:
        backup = self.backups.get(backup_id)
        self.backups.change(backup_id, expect=("available", "error"), status="deleting")
        try:
            target = self.zone(backup.availability_zone)
            with (
                contextlib.suppress(NotFound),
                target.cluster.open(ImageSpec(BACKUPS, backup.base)) as base,
            ):
                if _has_snap(base, backup.source_snap):
                    base.remove_snap(backup.source_snap)
            others = [b for b in self.backups.list(base=backup.base) if b.id != backup_id]
            if not others:
                with contextlib.suppress(NotFound):
                    target.cluster.remove(BACKUPS, backup.base)
        except BaseException:
            self.backups.change(backup_id, status=backup.status)
            raise
        with contextlib.suppress(FerryError):  # the volume's own snapshot for this backup
            volume = self.volumes.get(backup.volume_id)
            zone = self.zone(volume.availability_zone)
            with zone.cluster.open(ImageSpec(VOLUMES, volume_name(volume.id))) as image:
                if _has_snap(image, backup.source_snap):
                    image.remove_snap(backup.source_snap)
        self.backups.remove(backup_id)

    # --- block work ------------------------------------------------------------------------
    def _from_image(
        self,
        zone: Zone,
        spec: ImageSpec,
        image: ImageRecord,
        size: int | None,
        missing_image: MissingImage | None,
    ) -> dict[str, Any]:
        """Make ``spec`` from the image: a clone of its ``snap`` in the zone's store, after
        copying it there if the policy says so, or a full streamed copy. Says what happened."""
        store = zone.store
        policy = missing_image or self.compute.missing_image
        image_id, held = image.id, image.stores
        report: dict[str, Any] = {"image_id": image_id, "store": store.id, "moved": 0}
        if store.id not in held:
            if policy == "refuse":
                raise Conflict(
                    f"Image {image_id} is not in store {store.id} (zone {zone.az}) and "
                    "missing_image is refuse: refusing to fetch it, as Nova's "
                    "never_download_image_if_on_rbd"
                )
            if policy == "stream":
                _, source = self.images.data_store(image_id)
                with source.open_snap(image_id) as src:
                    moved = copy_image(src, zone.cluster, spec.pool, spec.name)
                self._grow(zone, spec, size)
                return report | {"action": "streamed", "from": source.id, "moved": moved.read}
            task = self.imports.ensure(image_id, store.id, worker=f"{self.site}/volumes")
            written = task.checkpoint.get("written", {}) if task and task.checkpoint else {}
            report |= {"action": "copied", "moved": int(written.get(store.id, 0))}
            if task is not None:
                report["task_id"] = task.id
        else:
            report["action"] = "clone"
        report |= self._clone(zone, store.spec(image_id), spec, size)
        return report

    def _clone(
        self, zone: Zone, parent: ImageSpec, spec: ImageSpec, size: int | None
    ) -> dict[str, Any]:
        """Clone ``parent`` to ``spec``; flatten when deeper than max_clone_depth; grow.

        Only the parent chain is read (read-only); the new clone is opened only to flatten or
        to grow it, so creation stays a clone plus a few header reads whatever the size.
        """
        above, parent_size = _chain(zone.cluster, parent)
        zone.cluster.clone(parent, spec.pool, spec.name)
        flattened = above + 1 > self.compute.max_clone_depth
        if flattened:
            with zone.cluster.open(spec) as image:
                image.flatten()
        if size is not None and size > parent_size:
            self._grow(zone, spec, size)
        depth = 0 if flattened else above + 1
        return {"parent": str(parent), "depth": depth, "flattened": flattened}

    def _clone_volume(
        self, zone: Zone, source_volid: str, spec: ImageSpec, size: int
    ) -> dict[str, Any]:
        """Cinder's RBD clone of a volume: snapshot it, clone that, drop the snapshot if the
        clone had to be flattened."""
        origin = ImageSpec(VOLUMES, volume_name(source_volid))
        snap = f"{spec.name}.clone_snap"
        with zone.cluster.open(origin) as image:
            image.create_snap(snap)
            image.protect_snap(snap)
        try:
            done = self._clone(zone, ImageSpec(origin.pool, origin.name, snap), spec, size)
        except BaseException:
            _drop_snap(zone.cluster, origin, snap)
            raise
        if done["flattened"]:
            _drop_snap(zone.cluster, origin, snap)
        return done

    @staticmethod
    def _grow(zone: Zone, spec: ImageSpec, size: int | None) -> None:
        if size is None:
            return
        with zone.cluster.open(spec) as image:
            if image.stat().size < size:
                image.resize(size)

    @contextlib.contextmanager
    def _undo_on_failure(
        self, zone: Zone, spec: ImageSpec, record_id: str, forget: Callable[[str], None]
    ) -> Iterator[None]:
        """On any failure: remove the block image (and its clone snapshot) and the row."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(FerryError):
                _remove_image(zone.cluster, spec)
            forget(record_id)
            raise

    def _usable_image(self, image_id: str) -> ImageRecord:
        image = self.images.get(image_id)
        if image.status != "active":
            raise Conflict(f"Image {image_id} is {image.status}; only active images are used")
        if image.disk_format not in (None, "raw", "iso"):
            raise InvalidRequest(
                f"Image {image_id} is {image.disk_format}: volumes and disks are clones of raw "
                "images (import it with conversion to raw)"
            )
        return image

    def _base_image(self, server: ServerRecord) -> dict[str, int]:
        if server.image_id is None:
            return {}
        with contextlib.suppress(NotFound):
            image = self.images.get(server.image_id)
            return {"min_disk": image.min_disk, "min_ram": image.min_ram}
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


def _not_now(volume: VolumeRecord, what: str) -> str:
    if volume.status == "in-use":
        return f"Volume {volume.id} is in-use; {what} an attached volume needs --force"
    return f"Volume {volume.id} is {volume.status}, not available"


def _has_snap(image: BlockImage, snap: str) -> bool:
    return any(s.name == snap for s in image.list_snaps())


def _chain(cluster: Cluster, spec: ImageSpec) -> tuple[int, int]:
    """How many parents lie above ``spec`` (0 for a flat image), and its size."""
    depth, size = 0, None
    while True:
        with cluster.open(spec, read_only=True) as image:
            st = image.stat()
        size = st.size if size is None else size
        if st.parent is None:
            return depth, size
        depth += 1
        spec = ImageSpec(st.parent.pool, st.parent.image, st.parent.snap)


def _drop_snap(cluster: Cluster, spec: ImageSpec, snap: str) -> None:
    with contextlib.suppress(FerryError), cluster.open(spec) as image:
        image.unprotect_snap(snap)
        image.remove_snap(snap)


def _remove_image(cluster: Cluster, spec: ImageSpec) -> None:
    """Remove a volume or disk with its internal snapshots; refuse while clones hang off it.

    If it was a clone of another volume's ``.clone_snap``, that snapshot goes too.
    """
    with cluster.open(spec) as image:
        parent = image.stat().parent
        for snap in image.list_snaps():
            children = image.children(snap.name)
            if children:
                raise InUse(
                    f"{spec} has volumes cloned from it "
                    f"({', '.join(str(c) for c in children)}); delete them first"
                )
        for snap in image.list_snaps():
            if snap.protected:
                image.unprotect_snap(snap.name)
            image.remove_snap(snap.name)
    cluster.remove(spec.pool, spec.name)
    if parent is not None and parent.snap.endswith(".clone_snap"):
        _drop_snap(cluster, ImageSpec(parent.pool, parent.image), parent.snap)
