"""Cinder's and Nova's storage side, in each availability zone's own cluster.

A volume is ``volumes/volume-<id>``, a server's root disk ``vms/<id>_disk``; both are
copy-on-write clones of ``images/<image-id>@snap`` in the zone's cluster (or of a volume
snapshot, ``volumes/volume-<id>@snapshot-<id>``). A clone deeper than ``max_clone_depth`` is
flattened at creation. An image the zone's store lacks is, by the site's ``missing_image``
policy, copied there once and then cloned (``copy``), streamed into a full uncached disk
(``stream``) or refused (``refuse``); every volume and server says which happened.

Backups live in the central site's ``backups`` pool (see ``ferry.volumes.backups``).

Every operation records its row first (``creating``), does the block work, then marks it done;
a failure undoes what it made, newest first (``ferry.volumes.undo.Undo``), and raises.

The work is in one module per part: ``zones`` (zones, cloning, fetching a missing image),
``volumes`` (volumes and their snapshots), ``servers`` and ``backups``. ``VolumeService`` is
the one object the API, the CLI and the tests hold.
"""

from __future__ import annotations

from typing import Any

from ferry.catalog.resources import Records
from ferry.config import Config
from ferry.errors import InvalidRequest
from ferry.images.imports import Imports
from ferry.images.service import ImageService
from ferry.volumes.backups import Backups
from ferry.volumes.servers import Servers
from ferry.volumes.volumes import Volumes
from ferry.volumes.zones import VMS, VOLUMES, Zones, disk_name, volume_name

__all__ = ["VMS", "VOLUMES", "VolumeService", "disk_name", "volume_name"]

RESETTABLE_VOLUME = ("available", "error", "in-use")


class VolumeService(Zones):
    """Volumes, snapshots, servers' disks and backups, as one site serves them: the site's
    zones and record tables, with the operations of each part."""

    def __init__(self, config: Config, site: str, images: ImageService, imports: Imports) -> None:
        super().__init__(config, site, images, imports)
        volumes, backups = Volumes(self), Backups(self)
        servers = Servers(self, volumes)
        self.create_volume = volumes.create_volume
        self.delete_volume = volumes.delete_volume
        self.create_snapshot = volumes.create_snapshot
        self.delete_snapshot = volumes.delete_snapshot
        self.create_server = servers.create_server
        self.set_power = servers.set_power
        self.delete_server = servers.delete_server
        self.create_server_image = servers.create_server_image
        self.create_backup = backups.create_backup
        self.restore_backup = backups.restore_backup
        self.delete_backup = backups.delete_backup

    def reset_status(self, kind: str, record_id: str, status: str) -> None:
        """Cinder's ``os-reset_status`` and Nova's ``os-resetState``: an admin's way out of a
        stuck status. Only to a final status, so nothing is left waiting on a holder."""
        table: dict[str, tuple[Records[Any], tuple[str, ...]]] = {
            "volume": (self.volumes, RESETTABLE_VOLUME),
            "snapshot": (self.snapshots, ("available", "error")),
            "backup": (self.backups, ("available", "error")),
            "server": (self.servers, ("ACTIVE", "ERROR")),
        }
        records, allowed = table[kind]
        if status not in allowed:
            raise InvalidRequest(
                f"Invalid status {status!r} for a {kind}: reset to one of {', '.join(allowed)}"
            )
        current = records.get(record_id)
        if kind == "volume" and (status == "in-use") != (current.attached_to is not None):
            raise InvalidRequest(
                f"Volume {record_id} is {'' if current.attached_to else 'not '}attached: "
                f"it cannot be reset to {status}"
            )
        records.change(record_id, status=status)
