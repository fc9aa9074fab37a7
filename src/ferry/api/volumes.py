"""Volumes, snapshots and backups (Cinder's v3 shapes) and servers' disks (Nova's v2.1 shapes).

Bodies are wrapped as Cinder and Nova wrap them (``{"volume": {...}}``). Every call is
synchronous: a clone takes constant time, so a created volume comes back ``available``. Each
resource carries a ``ferry`` object saying where its data is and how it got there (the clone's
parent, whether the image was copied or streamed into the zone, the bytes that moved).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ferry.api.auth import context_of
from ferry.api.bodies import JsonRoute, limits
from ferry.api.errors import empty
from ferry.api.members import image_access
from ferry.api.scope import creating, listing, owned
from ferry.catalog import BackupRecord, ServerRecord, SnapshotRecord, VolumeRecord
from ferry.catalog.resources import Records
from ferry.errors import InvalidRequest, NotFound, TooLarge
from ferry.volumes.service import VMS, VOLUMES, VolumeService, disk_name, volume_name

router = APIRouter(route_class=JsonRoute)
MissingImage = Literal["copy", "stream", "refuse"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VolumeCreate(_Body):
    size: int | None = Field(None, ge=1, description="GiB; default: the source's size.")
    availability_zone: str | None = None
    name: str | None = None
    description: str | None = None
    imageRef: str | None = Field(None, description="Make it from this image (a clone).")
    snapshot_id: str | None = Field(None, description="Make it from this volume snapshot.")
    source_volid: str | None = Field(None, description="Make it from this volume.")
    missing_image: MissingImage | None = Field(
        None, description="If the zone's store lacks the image: copy, stream or refuse."
    )


class VolumeRequest(_Body):
    volume: VolumeCreate


class SnapshotCreate(_Body):
    volume_id: str
    name: str | None = None
    description: str | None = None
    force: bool = Field(False, description="Snapshot an in-use volume.")


class SnapshotRequest(_Body):
    snapshot: SnapshotCreate


class BackupCreate(_Body):
    volume_id: str
    name: str | None = None
    force: bool = Field(False, description="Back up an in-use volume.")


class BackupRequest(_Body):
    backup: BackupCreate


class Restore(_Body):
    name: str | None = None
    availability_zone: str | None = None


class RestoreRequest(_Body):
    restore: Restore = Field(default_factory=Restore)


class ServerCreate(_Body):
    name: str | None = None
    imageRef: str | None = Field(None, description="Boot from a clone of this image.")
    availability_zone: str | None = None
    volume_id: str | None = Field(None, description="Boot from this volume.")
    boot_volume_size: int | None = Field(
        None, ge=1, description="GiB: make a volume from imageRef and boot from it."
    )
    missing_image: MissingImage | None = None


class ServerRequest(_Body):
    server: ServerCreate


def _svc(request: Request) -> VolumeService:
    service: VolumeService = request.app.state.volumes
    return service


def _gib(size: int | None, request: Request) -> int | None:
    """A requested size within the site's max_volume_size_gib (Cinder's words and 413)."""
    most = limits(request).max_volume_size_gib
    if size is not None and size > most:
        raise TooLarge(
            f"Requested volume size {size}G is larger than maximum allowed limit {most}G."
        )
    return size


# --- volumes --------------------------------------------------------------------------------
@router.post("/v3/volumes", status_code=202, tags=["volumes"])
def create_volume(body: VolumeRequest, request: Request) -> dict[str, Any]:
    v = body.volume
    owner = creating(request, "volume:create")
    _readable_sources(request, v.snapshot_id, v.source_volid, v.imageRef)
    record = _svc(request).create_volume(
        **owner,
        size=_gib(v.size, request),
        availability_zone=v.availability_zone,
        name=v.name,
        description=v.description,
        image_id=v.imageRef,
        snapshot_id=v.snapshot_id,
        source_volid=v.source_volid,
        missing_image=v.missing_image,
    )
    return {"volume": volume_doc(record)}


@router.get("/v3/volumes", tags=["volumes"])
def list_volumes(
    request: Request, availability_zone: str | None = None, all_tenants: str | None = None
) -> dict[str, Any]:
    where = listing(request, "Volume", all_tenants)
    if availability_zone:
        where["availability_zone"] = availability_zone
    return {"volumes": [volume_doc(v) for v in _svc(request).volumes.list(**where)]}


@router.get("/v3/volumes/{volume_id}", tags=["volumes"])
def show_volume(volume_id: str, request: Request) -> dict[str, Any]:
    return {"volume": volume_doc(owned(request, _svc(request).volumes, volume_id))}


@router.delete("/v3/volumes/{volume_id}", status_code=202, tags=["volumes"])
def delete_volume(volume_id: str, request: Request) -> Response:
    owned(request, _svc(request).volumes, volume_id, "volume:delete")
    _svc(request).delete_volume(volume_id)
    return empty(202)


# --- snapshots ------------------------------------------------------------------------------
@router.post("/v3/snapshots", status_code=202, tags=["snapshots"])
def create_snapshot(body: SnapshotRequest, request: Request) -> dict[str, Any]:
    s = body.snapshot
    creating(request, "volume:create_snapshot")
    owned(request, _svc(request).volumes, s.volume_id, "volume:create_snapshot")
    record = _svc(request).create_snapshot(
        s.volume_id, name=s.name, description=s.description, force=s.force
    )
    return {"snapshot": snapshot_doc(record)}


@router.get("/v3/snapshots", tags=["snapshots"])
def list_snapshots(
    request: Request, volume_id: str | None = None, all_tenants: str | None = None
) -> dict[str, Any]:
    where = listing(request, "Snapshot", all_tenants)
    if volume_id:
        where["volume_id"] = volume_id
    return {"snapshots": [snapshot_doc(s) for s in _svc(request).snapshots.list(**where)]}


@router.get("/v3/snapshots/{snapshot_id}", tags=["snapshots"])
def show_snapshot(snapshot_id: str, request: Request) -> dict[str, Any]:
    return {"snapshot": snapshot_doc(owned(request, _svc(request).snapshots, snapshot_id))}


@router.delete("/v3/snapshots/{snapshot_id}", status_code=202, tags=["snapshots"])
def delete_snapshot(snapshot_id: str, request: Request) -> Response:
    owned(request, _svc(request).snapshots, snapshot_id, "volume:delete_snapshot")
    _svc(request).delete_snapshot(snapshot_id)
    return empty(202)


# --- backups --------------------------------------------------------------------------------
@router.post("/v3/backups", status_code=202, tags=["backups"])
def create_backup(body: BackupRequest, request: Request) -> dict[str, Any]:
    b = body.backup
    creating(request, "backup:create")
    owned(request, _svc(request).volumes, b.volume_id, "backup:create")
    record = _svc(request).create_backup(b.volume_id, name=b.name, force=b.force)
    return {"backup": backup_doc(record)}


@router.get("/v3/backups", tags=["backups"])
def list_backups(
    request: Request, volume_id: str | None = None, all_tenants: str | None = None
) -> dict[str, Any]:
    where = listing(request, "Backup", all_tenants)
    if volume_id:
        where["volume_id"] = volume_id
    return {"backups": [backup_doc(b) for b in _svc(request).backups.list(**where)]}


@router.get("/v3/backups/{backup_id}", tags=["backups"])
def show_backup(backup_id: str, request: Request) -> dict[str, Any]:
    return {"backup": backup_doc(owned(request, _svc(request).backups, backup_id))}


@router.delete("/v3/backups/{backup_id}", status_code=202, tags=["backups"])
def delete_backup(backup_id: str, request: Request) -> Response:
    owned(request, _svc(request).backups, backup_id, "backup:delete")
    _svc(request).delete_backup(backup_id)
    return empty(202)


@router.post("/v3/backups/{backup_id}/restore", status_code=202, tags=["backups"])
def restore_backup(backup_id: str, body: RestoreRequest, request: Request) -> dict[str, Any]:
    r = body.restore
    owned(request, _svc(request).backups, backup_id, "backup:restore")
    volume = _svc(request).restore_backup(
        backup_id, name=r.name, availability_zone=r.availability_zone
    )
    return {"restore": {"backup_id": backup_id, "volume_id": volume.id, "volume_name": volume.name}}


# --- servers --------------------------------------------------------------------------------
@router.post("/v2.1/servers", status_code=202, tags=["servers"])
def create_server(body: ServerRequest, request: Request) -> dict[str, Any]:
    s = body.server
    owner = creating(request, "os_compute_api:servers:create")
    _readable_sources(request, None, s.volume_id, s.imageRef)
    record = _svc(request).create_server(
        **owner,
        name=s.name,
        availability_zone=s.availability_zone,
        image_id=s.imageRef,
        volume_id=s.volume_id,
        boot_volume_size=_gib(s.boot_volume_size, request),
        missing_image=s.missing_image,
    )
    return {"server": server_doc(record)}


@router.get("/v2.1/servers", tags=["servers"])
def list_servers(request: Request, all_tenants: str | None = None) -> dict[str, Any]:
    where = listing(request, "Server", all_tenants)
    return {"servers": [server_doc(s) for s in _svc(request).servers.list(**where)]}


@router.get("/v2.1/servers/{server_id}", tags=["servers"])
def show_server(server_id: str, request: Request) -> dict[str, Any]:
    return {"server": server_doc(owned(request, _svc(request).servers, server_id))}


@router.delete("/v2.1/servers/{server_id}", status_code=204, tags=["servers"])
def delete_server(server_id: str, request: Request) -> Response:
    owned(request, _svc(request).servers, server_id, "os_compute_api:servers:delete")
    _svc(request).delete_server(server_id)
    return empty(204)


@router.post("/v3/{kind}/{record_id}/action", status_code=202, tags=["volumes"])
def reset_status(kind: str, record_id: str, body: dict[str, Any], request: Request) -> Response:
    """Cinder's admin action ``{"os-reset_status": {"status": S}}`` on a volume, snapshot or
    backup (``kind``: volumes, snapshots, backups)."""
    svc = _svc(request)
    noun = {"volumes": "volume", "snapshots": "snapshot", "backups": "backup"}.get(kind)
    if noun is None:
        raise NotFound(f"no such resource: /v3/{kind}")
    arg = body.get("os-reset_status")
    if len(body) != 1 or not isinstance(arg, dict):
        raise InvalidRequest('the one action here is {"os-reset_status": {"status": S}}')
    status = arg.get("status")
    if not isinstance(status, str):
        raise InvalidRequest("os-reset_status needs a status")
    tables: dict[str, Records[Any]] = {
        "volume": svc.volumes, "snapshot": svc.snapshots, "backup": svc.backups
    }  # fmt: skip
    records = tables[noun]
    owned(request, records, record_id, f"volume_extension:{noun}_admin_actions:reset_status")
    _svc(request).reset_status(noun, record_id, status)
    return empty(202)


@router.post("/v2.1/servers/{server_id}/action", status_code=202, tags=["servers"])
def server_action(server_id: str, body: dict[str, Any], request: Request) -> Any:
    """``{"os-stop": null}``, ``{"os-start": null}``, ``{"createImage": {"name": N}}`` or
    ``{"os-resetState": {"state": "active"|"error"}}``."""
    if len(body) != 1:
        raise InvalidRequest("give exactly one action: os-stop, os-start or createImage")
    ((action, arg),) = body.items()
    rule = SERVER_ACTIONS.get(action)
    if rule is None:
        raise InvalidRequest(f"unknown server action {action!r}")
    owned(request, _svc(request).servers, server_id, rule)
    if action == "createImage":
        name = arg.get("name") if isinstance(arg, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest("createImage needs a name")
        image = _svc(request).create_server_image(server_id, name)
        return {"image_id": image.id}
    if action == "os-resetState":  # Nova's admin way out: {"os-resetState": {"state": S}}
        state = arg.get("state") if isinstance(arg, dict) else None
        if state not in ("active", "error"):
            raise InvalidRequest("os-resetState needs a state: active or error")
        _svc(request).reset_status("server", server_id, state.upper())
        return empty(202)
    _svc(request).set_power(server_id, on=action == "os-start")
    return empty(202)


SERVER_ACTIONS = {
    "createImage": "os_compute_api:servers:create_image",
    "os-resetState": "os_compute_api:os-admin-actions:reset_state",
    "os-stop": "os_compute_api:servers:stop",
    "os-start": "os_compute_api:servers:start",
}


def _readable_sources(
    request: Request, snapshot_id: str | None, volume_id: str | None, image_id: str | None = None
) -> None:
    """A volume or snapshot a new record is made from must be the caller's to read, and an
    image one it may see (Cinder and Nova ask Glance with the caller's token: 404 otherwise)."""
    if image_id is not None:
        image_access(request).fetch(context_of(request), image_id)
    if snapshot_id is not None:
        owned(request, _svc(request).snapshots, snapshot_id)
    if volume_id is not None:
        owned(request, _svc(request).volumes, volume_id)


# --- rendering ------------------------------------------------------------------------------
def _time(record: Any) -> dict[str, str]:
    return {
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


def volume_doc(v: VolumeRecord) -> dict[str, Any]:
    attachments = [{"server_id": v.attached_to, "volume_id": v.id}] if v.attached_to else []
    return {
        "id": v.id,
        "name": v.name,
        "description": v.description,
        "status": v.status,
        "size": v.size,
        "availability_zone": v.availability_zone,
        "bootable": str(v.bootable).lower(),
        "snapshot_id": v.source.get("snapshot_id"),
        "source_volid": v.source.get("source_volid"),
        "volume_image_metadata": v.volume_image_metadata or {},
        "attachments": attachments,
        **_time(v),
        "ferry": {"block_image": f"{VOLUMES}/{volume_name(v.id)}", **v.source},
    }


def snapshot_doc(s: SnapshotRecord) -> dict[str, Any]:
    return {
        "id": s.id,
        "volume_id": s.volume_id,
        "name": s.name,
        "description": s.description,
        "status": s.status,
        "size": s.size,
        **_time(s),
        "ferry": {"block_snapshot": f"{VOLUMES}/{volume_name(s.volume_id)}@snapshot-{s.id}"},
    }


def backup_doc(b: BackupRecord) -> dict[str, Any]:
    return {
        "id": b.id,
        "volume_id": b.volume_id,
        "name": b.name,
        "status": b.status,
        "size": b.size,
        "availability_zone": b.availability_zone,
        "is_incremental": b.is_incremental,
        **_time(b),
        "ferry": {"block_snapshot": f"backups/{b.base}@{b.source_snap}", "moved": b.moved},
    }


def server_doc(s: ServerRecord) -> dict[str, Any]:
    disk = None if s.volume_id else f"{VMS}/{disk_name(s.id)}"
    doc: dict[str, Any] = {
        "id": s.id,
        "name": s.name,
        "status": s.status,
        "OS-EXT-AZ:availability_zone": s.availability_zone,
        "image": {"id": s.image_id} if s.image_id else "",
        "os-extended-volumes:volumes_attached": [{"id": s.volume_id}] if s.volume_id else [],
        "created": s.created_at.isoformat(),
        "updated": s.updated_at.isoformat(),
        "ferry": {"disk": disk, "image_source": s.image_source},
    }
    if s.fault:
        doc["fault"] = {"message": s.fault}
    return doc
