"""The reconciler: finishes or undoes the work of processes that died, then removes orphans.

One pass, under the lease ``reconcile:<site>`` (so two servers of a site never both act):

1. *Records.* Every row in an unfinished status whose holder is dead is taken over (a
   compare-and-set on ``held_by``) and brought to a final status, as Glance and Cinder would:
   an upload cut off (``saving``) goes back to ``queued``; a deleted image's data is removed
   from every store this site reaches; a volume, snapshot or backup cut off while
   ``creating`` is ``error``, while ``deleting`` is deleted; a volume cut off while backing up
   is available again; a server cut off in ``BUILD`` is ``ERROR``. An import task whose
   worker died is handed to a live worker at once; an image left ``importing`` by no task
   waits for its data again.
2. *Orphans.* The site's own cluster is swept (``sweep.Sweep``): every cluster is some
   site's own, so every orphan is found by one site. Staged files nobody waits for are
   removed; an embedded cluster is garbage-collected when anything was removed (and on the
   first pass).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ferry.block.embedded import EmbeddedCluster
from ferry.catalog.owners import TRANSIENT, Held
from ferry.catalog.resources import Records
from ferry.config import RecoveryConfig
from ferry.errors import Conflict, FerryError, Forbidden, InvalidRequest, NotFound
from ferry.images.imports import IMPORT_TASK, IMPORTING, Imports
from ferry.images.service import ImageService
from ferry.recovery.holder import Liveness
from ferry.recovery.periodic import Periodic
from ferry.recovery.sweep import Sweep, sweep_staging
from ferry.volumes import VolumeService

log = logging.getLogger(__name__)


@dataclass
class Report:
    """What one pass found and did, a line each."""

    actions: list[str] = field(default_factory=list)  # records brought to a final status
    orphans: list[str] = field(default_factory=list)  # found (check) or removed (repair)
    stuck: list[str] = field(default_factory=list)  # unfinished, owner alive or unreachable
    errors: list[str] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return [*self.actions, *self.orphans, *self.stuck, *self.errors]


class Reconciler:
    """One site's reconciler: ``run()`` a pass, or ``start()`` a thread that runs them."""

    def __init__(
        self, site: str, images: ImageService, imports: Imports, volumes: VolumeService,
        config: RecoveryConfig,
    ) -> None:  # fmt: skip
        self.site = site
        self.images = images
        self.catalog = images.catalog
        self.imports = imports
        self.volumes = volumes
        self.config = config
        self.passes = 0
        self._gc_due = True
        self._acts = self._actions()
        self._thread = Periodic(f"reconcile-{site}", config.interval_seconds, self._pass, now=True)

    # --- thread ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def _pass(self) -> None:
        for line in self.run().lines:
            log.warning("reconcile %s: %s", self.site, line)

    # --- a pass ----------------------------------------------------------------------------
    def run(self, *, repair: bool = True) -> Report:
        """One pass; with ``repair`` False only report what a pass would do."""
        report = Report()
        me = self.catalog.holder or f"{self.site}/check"
        lease = f"reconcile:{self.site}"
        span = timedelta(seconds=max(60.0, 3 * self.config.interval_seconds))
        if repair and not self.catalog.owners.take_lease(lease, me, span):
            report.stuck.append(f"another server holds {lease}: it reconciles this site")
            return report
        try:
            if repair:  # a check changes nothing
                self.catalog.owners.forget_lapsed(timedelta(hours=1))
            live = Liveness(self.catalog.owners.holders)
            self._records(live, report, repair)
            self._tasks(live, report, repair)
            self._orphans(live, report, repair)
        finally:
            if repair:
                self.catalog.owners.release_lease(lease, me)
        self.passes += 1
        return report

    def _records(self, live: Liveness, report: Report, repair: bool) -> None:
        for table in TRANSIENT:
            for held in self.catalog.owners.held(table):
                if live.alive(held.held_by) or not self._reaches(held):
                    continue  # working, or another site's to finish
                what = f"{held.table[:-1]} {held.id} ({held.status}, held by {held.held_by})"
                if not repair:
                    report.stuck.append(f"{what}: its owner {held.held_by} is gone")
                    continue
                if not self.catalog.owners.take_over(held):
                    continue  # another reconciler, or the owner, moved it meanwhile
                try:
                    report.actions.append(
                        f"{what}: {self._acts[(held.table, held.status)](held.id)}"
                    )
                    self._gc_due = True
                except FerryError as exc:
                    report.stuck.append(f"{what}: {exc}")
                finally:  # a row not brought to a final status is anyone's again
                    self.catalog.owners.release(held.table, held.id)

    def _actions(self) -> dict[tuple[str, str], Callable[[str], str]]:
        """What brings a cut-off row of (table, status) to a final status; says what it did."""
        v = self.volumes
        return {
            ("images", "saving"): self._upload_cut,
            ("images", "deleted"): self._delete_image_data,
            ("volumes", "creating"): _set(v.volumes, "error"),
            ("volumes", "restoring-backup"): _set(v.volumes, "error"),
            ("volumes", "backing-up"): self._backup_cut,
            ("volumes", "deleting"): _redo(v.volumes, v.delete_volume, "error"),
            ("volume_snapshots", "creating"): _set(v.snapshots, "error"),
            ("volume_snapshots", "deleting"): _redo(v.snapshots, v.delete_snapshot, "error"),
            ("servers", "BUILD"): self._build_cut,
            ("servers", "DELETING"): _redo(v.servers, v.delete_server, "ERROR", "DELETING"),
            ("backups", "creating"): _set(v.backups, "error"),
            ("backups", "restoring"): _set(v.backups, "available"),
            ("backups", "deleting"): _redo(v.backups, v.delete_backup, "error"),
        }

    def _reaches(self, held: Held) -> bool:
        """Whether this site can finish ``held``: a delete needs the data's cluster."""
        if held.table == "images":
            keys = {s.ref.key_in_catalog for s in self.images.stores}
            return held.status != "deleted" or bool(
                keys & set(self.catalog.owners.deleted_locations(held.id))
            )
        if held.status not in ("deleting", "DELETING"):
            return True  # a status change in the catalogue: any site
        try:
            record = getattr(self.volumes, held.table.removeprefix("volume_")).get(held.id)
            az = getattr(record, "availability_zone", None)
            if az is None:  # a snapshot: its volume's zone
                az = self.volumes.volumes.get(record.volume_id).availability_zone
            self.volumes.zone(az)
        except FerryError:
            return False
        return True

    def _upload_cut(self, image_id: str) -> str:
        self.catalog.update_image(image_id, expect_status=("saving",), fields={"status": "queued"})
        return "upload cut off: back to queued (its partial data is an orphan now)"

    def _delete_image_data(self, image_id: str) -> str:
        left = []
        for key in self.catalog.owners.deleted_locations(image_id):
            store = next((s for s in self.images.stores if s.ref.key_in_catalog == key), None)
            if store is None:
                left.append(key)
                continue
            with contextlib.suppress(NotFound):
                store.delete(image_id)
            self.catalog.forget_location(image_id, store.id)
        if left:
            raise NotFound(f"left for a site that reaches {', '.join(left)}")
        return "delete finished: its data is gone from every store"

    def _backup_cut(self, volume_id: str) -> str:
        volume = self.volumes.volumes.get(volume_id)
        return _set(self.volumes.volumes, "in-use" if volume.attached_to else "available")(
            volume_id
        )

    def _build_cut(self, server_id: str) -> str:
        fault = "The server's build was cut off (its ferry process died); delete it."
        self.volumes.servers.change(server_id, status="ERROR", fault=fault)
        return "build cut off: now ERROR"

    def _tasks(self, live: Liveness, report: Report, repair: bool) -> None:
        for task_id, owner in self.catalog.owners.unfinished_tasks():
            if owner is None or live.alive(owner):
                continue
            if repair:
                with contextlib.suppress(Conflict, NotFound):  # a worker took it meanwhile
                    self.catalog.hold_task(task_id, owner, timedelta(0))
                    report.actions.append(f"task {task_id}: its worker {owner} died: released")
            else:
                report.stuck.append(f"task {task_id}: its worker {owner} is gone")
        for image_id in self.catalog.owners.importing_without_task():
            back = "uploading" if self.imports.staged(image_id).exists() else "queued"
            if not repair:
                report.stuck.append(f"image {image_id} (importing): no task imports it")
                continue
            with contextlib.suppress(Conflict, NotFound):
                self.catalog.update_image(
                    image_id,
                    expect_status=("importing",),
                    fields={"status": back},
                    set_properties={IMPORTING: ""},
                    remove_properties={IMPORT_TASK},
                )
                report.actions.append(f"image {image_id} (importing): no task: now {back}")

    def _orphans(self, live: Liveness, report: Report, repair: bool) -> None:
        """Sweep the site's own cluster (every cluster is some site's own, and only that
        site collects its garbage), its staging area, then collect unreferenced chunks."""
        repair = repair and self.config.remove_orphans
        store = self.images.stores.default
        key = store.ref.key_in_catalog
        sweep = Sweep(self.catalog, store.cluster, key, live)
        try:
            sweep.run(repair=repair)
        except FerryError as exc:
            report.errors.append(f"sweep of {key}: {exc}")
        report.orphans += sweep.removed
        report.stuck += sweep.kept
        report.orphans += sweep_staging(
            self.imports.staging, self.catalog, repair, live_task=self._task_unfinished
        )
        if repair and (sweep.removed or self._gc_due):
            self._gc(report)

    def _task_unfinished(self, task_id: str) -> bool:
        try:
            return self.catalog.get_task(task_id).status in ("pending", "processing")
        except NotFound:
            return False

    def _gc(self, report: Report) -> None:
        """Collect the chunks nothing references any more in the site's own embedded cluster."""
        store = self.images.stores.default
        cluster = store.cluster
        if not isinstance(cluster, EmbeddedCluster):
            return
        try:
            freed = cluster.gc()
        except (Forbidden, InvalidRequest) as exc:
            report.stuck.append(f"gc of {store.ref.key_in_catalog} skipped: {exc}")
            return
        self._gc_due = False
        if freed.chunks or freed.segments:
            report.orphans.append(
                f"gc of {store.ref.key_in_catalog}: {freed.chunks} chunk(s), "
                f"{freed.segments} segment(s), {freed.bytes_freed} bytes freed"
            )


def _set(records: Records[Any], status: str) -> Callable[[str], str]:
    def act(record_id: str) -> str:
        records.change(record_id, status=status)
        return f"cut off: now {status}"

    return act


def _redo(
    records: Records[Any], delete: Callable[[str], None], failed: str, cut: str = "deleting"
) -> Callable[[str], str]:
    """A delete cut off: done again from the start (each of its steps is idempotent). If it
    fails again (on Ceph, a dead process's watch keeps the image busy for a while), the row
    goes back to ``cut``, unheld, for the next pass."""

    def act(record_id: str) -> str:
        records.change(record_id, status=failed)  # the status the delete starts from
        try:
            delete(record_id)
        except FerryError:
            records.change(record_id, status=cut)
            raise
        return "delete finished"

    return act
