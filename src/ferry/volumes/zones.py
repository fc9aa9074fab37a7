"""Availability zones as one site reaches them, and the block work volumes and disks share:
cloning (with the flatten rule), fetching a missing image by policy, removing what was made."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

from ferry.block import BlockImage, Cluster, ImageSpec
from ferry.block.ops import copy_image
from ferry.catalog import ImageRecord, VolumeRecord
from ferry.config import Config
from ferry.errors import Conflict, FerryError, InUse, InvalidRequest
from ferry.images.imports import Imports
from ferry.images.service import ImageService
from ferry.images.stores import Store
from ferry.volumes.undo import Undo

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


class Zones:
    """One site's zones, its record tables, and the clone and fetch work on them."""

    def __init__(self, config: Config, site: str, images: ImageService, imports: Imports) -> None:
        self.config = config
        self.site = site
        self.compute = config.site(site).compute
        self.images = images
        self.imports = imports
        catalog = images.catalog
        self.volumes, self.snapshots = catalog.volumes, catalog.snapshots
        self.servers, self.backups = catalog.servers, catalog.backups

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

    def usable_image(self, image_id: str) -> ImageRecord:
        """The image, if volumes and disks can be made from it: active and raw."""
        image = self.images.get(image_id)
        if image.status != "active":
            raise Conflict(f"Image {image_id} is {image.status}; only active images are used")
        if image.disk_format not in (None, "raw", "iso"):
            raise InvalidRequest(
                f"Image {image_id} is {image.disk_format}: volumes and disks are clones of raw "
                "images (import it with conversion to raw)"
            )
        return image

    def from_image(
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
        report |= self.clone(zone, store.spec(image_id), spec, size)
        return report

    def clone(
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

    def clone_volume(
        self, zone: Zone, source_volid: str, spec: ImageSpec, size: int
    ) -> dict[str, Any]:
        """Cinder's RBD clone of a volume: snapshot it, clone that, drop the snapshot if the
        clone had to be flattened."""
        origin = ImageSpec(VOLUMES, volume_name(source_volid))
        snap = f"{spec.name}.clone_snap"
        with zone.cluster.open(origin) as image:
            image.create_snap(snap)
            image.protect_snap(snap)
        with Undo() as undo:
            undo.add(drop_snap, zone.cluster, origin, snap)
            done = self.clone(zone, ImageSpec(origin.pool, origin.name, snap), spec, size)
        if done["flattened"]:
            drop_snap(zone.cluster, origin, snap)
        return done

    @staticmethod
    def _grow(zone: Zone, spec: ImageSpec, size: int | None) -> None:
        if size is None:
            return
        with zone.cluster.open(spec) as image:
            if image.stat().size < size:
                image.resize(size)


def not_now(volume: VolumeRecord, what: str) -> str:
    """Why ``volume`` cannot be snapshotted or backed up now."""
    if volume.status == "in-use":
        return f"Volume {volume.id} is in-use; {what} an attached volume needs --force"
    return f"Volume {volume.id} is {volume.status}, not available"


def has_snap(image: BlockImage, snap: str) -> bool:
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


def remove_snap(cluster: Cluster, spec: ImageSpec, snap: str) -> None:
    """Remove the (unprotected) snapshot ``snap`` of ``spec`` if it is there."""
    with cluster.open(spec) as image:
        if has_snap(image, snap):
            image.remove_snap(snap)


def drop_snap(cluster: Cluster, spec: ImageSpec, snap: str) -> None:
    """Unprotect and remove a clone snapshot, quietly: a failure leaves it for the clone's
    removal to drop."""
    with contextlib.suppress(FerryError), cluster.open(spec) as image:
        image.unprotect_snap(snap)
        image.remove_snap(snap)


def remove_image(cluster: Cluster, spec: ImageSpec) -> None:
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
        drop_snap(cluster, ImageSpec(parent.pool, parent.image), parent.snap)
