"""Orphans: block images, snapshots and staged files that no catalogue record accounts for.

Every operation writes its record before it makes anything in a cluster, and removes the
thing before the record, so a block image in one of ferry's pools whose record is gone (or
says it should not exist) is garbage, whatever its age. Names that are not ferry's are left
alone. What is removed is said once, as a line of the pass's report.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ferry.block import BlockImage, Cluster, ImageSpec
from ferry.catalog import Catalog
from ferry.errors import Forbidden, InUse, NotFound
from ferry.recovery.holder import Liveness, running
from ferry.volumes.zones import remove_image

log = logging.getLogger(__name__)

_ID = r"[0-9a-fA-F-]{36}"
_IMAGE_ID = re.compile(_ID)
_VOLUME = re.compile(rf"volume-({_ID})")
_DISK = re.compile(rf"({_ID})_disk")
_BACKUP_BASE = re.compile(rf"volume-{_ID}\.backup\.{_ID}")
_SNAPSHOT = re.compile(rf"snapshot-({_ID})")
_BACKUP_SNAP = re.compile(rf"backup\.({_ID})")
_CLONE_SNAP = re.compile(rf"volume-({_ID})\.clone_snap")
_IMAGE_SNAP = re.compile(r"image-(.{1,36})")
STAGED_GRACE = 10.0  # seconds


class Sweep:
    """One pass over one cluster as one site's store reaches it (``key``: the catalogue's
    name for the cluster, as in image locations)."""

    def __init__(self, catalog: Catalog, cluster: Cluster, key: str, live: Liveness) -> None:
        self.catalog = catalog
        self.live = live
        self.owners = catalog.owners
        self.cluster = cluster
        self.key = key
        self._bases: set[str] | None = None
        self._claimable: dict[str, str] = {}  # image id -> the status its record was seen in
        self.removed: list[str] = []
        self.kept: list[str] = []  # orphans that could not go (clones hang off them)

    def run(self, *, repair: bool) -> None:
        """Find orphans in every pool this cluster's client may list; remove them if repair."""
        pools: dict[str, Callable[[str], bool | None]] = {
            "images": self._image_wanted,
            "volumes": self._volume_wanted,
            "vms": self._disk_wanted,
            "backups": self._backup_wanted,
        }
        for pool, wanted in pools.items():
            try:
                names = self.cluster.list_images(pool)
            except (NotFound, Forbidden):
                continue  # no such pool, or not this client's
            for name in names:
                verdict = wanted(name)
                if verdict is None:
                    continue  # not a name ferry makes
                spec = ImageSpec(pool, name)
                if not verdict:
                    self._orphan(spec, repair)
                elif pool != "images":
                    self._snapshots(spec, repair)

    # --- verdicts: True keep, False orphan, None not ferry's -------------------------------
    def _image_wanted(self, name: str) -> bool | None:
        if not _IMAGE_ID.fullmatch(name):
            return None  # not a name ferry makes
        status, holder, busy = self.owners.image_state(name)
        if status is None or status == "deleted":
            return False  # never recorded (the pool is ferry's), or deleted
        if busy or status == "importing" or (status == "saving" and self.live.alive(holder)):
            return True  # a live upload or an import task is writing it
        with contextlib.suppress(NotFound):
            locations = self.catalog.get_image(name).locations
            if any(self.catalog.store_key(loc.store) == self.key for loc in locations):
                return True
            self._claimable[name] = status  # a live record: hold it while the data goes
        return False

    def _volume_wanted(self, name: str) -> bool | None:
        m = _VOLUME.fullmatch(name)
        return self.owners.exists("volumes", m[1]) if m else None

    def _disk_wanted(self, name: str) -> bool | None:
        m = _DISK.fullmatch(name)
        return self.owners.exists("servers", m[1]) if m else None

    def _backup_wanted(self, name: str) -> bool | None:
        if not _BACKUP_BASE.fullmatch(name):
            return None
        if self._bases is None:  # read once a sweep
            self._bases = self.owners.backup_bases()
        return name in self._bases

    def _snap_wanted(self, snap: str) -> bool:
        for pattern, table in (
            (_SNAPSHOT, "volume_snapshots"),
            (_BACKUP_SNAP, "backups"),
            (_CLONE_SNAP, "volumes"),
        ):
            if m := pattern.fullmatch(snap):
                return self.owners.exists(table, m[1])
        if m := _IMAGE_SNAP.fullmatch(snap):  # server image create reads the disk at it
            status, holder, _ = self.owners.image_state(m[1])
            return status == "saving" and self.live.alive(holder)
        return True

    # --- removal ---------------------------------------------------------------------------
    def _orphan(self, spec: ImageSpec, repair: bool) -> None:
        if not repair:
            self.removed.append(f"orphan {self.key}:{spec}")
            return
        status = self._claimable.get(spec.name) if spec.pool == "images" else None
        if status is not None and not self.owners.claim_image(spec.name, status):
            return  # an upload or import took the image meanwhile: its data is wanted
        try:
            purge(self.cluster, spec)
        except InUse as exc:
            self.kept.append(f"orphan {self.key}:{spec} kept: {exc}")
            return
        except NotFound:
            return  # its owner removed it meanwhile
        finally:
            if status is not None:
                self.owners.release("images", spec.name)
        self.removed.append(f"removed orphan {self.key}:{spec}")

    def _snapshots(self, spec: ImageSpec, repair: bool) -> None:
        try:
            with self.cluster.open(spec) as image:
                for snap in image.list_snaps():
                    if not self._snap_wanted(snap.name):
                        self._orphan_snap(image, spec, snap.name, snap.protected, repair)
        except NotFound:
            return

    def _orphan_snap(
        self, image: BlockImage, spec: ImageSpec, snap: str, protected: bool, repair: bool
    ) -> None:
        where = f"{self.key}:{spec}@{snap}"
        if not repair:
            self.removed.append(f"orphan snapshot {where}")
            return
        try:
            if protected:
                image.unprotect_snap(snap)
            image.remove_snap(snap)
        except InUse as exc:
            self.kept.append(f"orphan snapshot {where} kept: {exc}")
            return
        self.removed.append(f"removed orphan snapshot {where}")


def purge(cluster: Cluster, spec: ImageSpec) -> None:
    """Remove a block image as a volume delete does (``remove_image``: its snapshots too,
    InUse while clones hang off one).

    A listed image that does not open was cut off while being made or removed (Ceph keeps
    its directory entry): removing it again clears what is left.
    """
    try:
        remove_image(cluster, spec)
    except NotFound:
        if spec.name not in cluster.list_images(spec.pool):
            raise  # gone: its owner removed it meanwhile
        cluster.remove(spec.pool, spec.name)


def sweep_staging(
    staging: Path, catalog: Catalog, repair: bool, *, live_task: Callable[[str], bool]
) -> list[str]:
    """Staged files of images no longer waiting for them, and work files of dead owners.

    ``<image-id>`` is glance-direct's staged data: kept while the image is ``uploading`` or
    ``importing``. ``.stage-<pid>-*`` is a staging upload in progress, kept while that process
    runs. ``.<image-id>.<task-id>`` is an import's work directory, kept while its task is
    unfinished (a worker that takes the task over reuses it).
    """
    found: list[str] = []
    if not staging.is_dir():
        return found
    for entry in staging.iterdir():
        name = entry.name
        if name.startswith(".stage-"):
            pid = name.removeprefix(".stage-").partition("-")[0]
            keep = pid.isdigit() and running(int(pid))
        elif name.startswith("."):
            keep = live_task(name.rpartition(".")[2])
        else:  # renamed into place just before its image becomes uploading: a grace
            fresh = time.time() - entry.stat().st_mtime < STAGED_GRACE
            keep = fresh or catalog.owners.image_state(name)[0] in ("uploading", "importing")
        if keep:
            continue
        if repair:
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        found.append(f"{'removed' if repair else 'orphan'} staged {entry}")
    return found
