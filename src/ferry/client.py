"""A small synchronous client for one ferry site's API: images (OpenStack Image API v2,
multi-store), volumes, snapshots and backups (Cinder v3) and servers' disks (Nova v2.1).

Methods return the JSON documents as dicts, Cinder's and Nova's unwrapped from their
``{"volume": ...}`` envelopes. HTTP errors become the ``ferry.errors`` class the server
raised, with the server's message on one line.
"""

from __future__ import annotations

import hashlib
import html
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO, Self

import httpx

from ferry import errors

Doc = dict[str, Any]
Progress = Callable[[int], None]  # bytes done so far
JobProgress = Callable[[int, int | None], None]  # a task's bytes done, bytes total (or None)

CHUNK = 8 << 20  # bytes per read while uploading and per write while downloading
DONE = ("success", "failure")
# A Cinder or Nova resource -> its collection; its documents come wrapped in its name.
COLLECTIONS = {
    "volume": "/v3/volumes",
    "snapshot": "/v3/snapshots",
    "backup": "/v3/backups",
    "server": "/v2.1/servers",
}

# HTTP status -> error class: the inverse of ferry.api.errors.STATUS, where it is one-to-one.
ERRORS: dict[int, type[errors.FerryError]] = {
    400: errors.InvalidRequest,
    401: errors.Unauthenticated,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    410: errors.ReadOnlyStore,
    413: errors.StorageFull,
    415: errors.FormatMismatch,
    416: errors.InvalidRequest,
    503: errors.BackendUnavailable,
}


class ImageClient:
    """One ferry site's API (images, volumes, snapshots, backups, servers), over one HTTP
    connection pool. Named for the Image API it began with."""

    def __init__(self, url: str, timeout: float = 60, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"X-Auth-Token": token or "noauth", "Accept": "application/json"},
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- metadata ------------------------------------------------------------------------
    def stores(self) -> list[Doc]:
        """The stores as ``GET /v2/info/stores`` lists them (flags are the string "true")."""
        found: list[Doc] = self._json("GET", "/v2/info/stores")["stores"]
        return found

    def traffic(self) -> dict[str, dict[str, int]]:
        """Bytes the site read from and wrote to each cluster, from its ``/metrics``:
        ``{"read": {cluster: n}, "written": {cluster: n}}``."""
        found: dict[str, dict[str, int]] = {"read": {}, "written": {}}
        with self._call("GET", "/metrics") as r:
            for line in r.read().decode().splitlines():
                if line.startswith("ferry_store_bytes_"):
                    labels, value = line.rsplit(" ", 1)
                    kind = "read" if labels.startswith("ferry_store_bytes_read") else "written"
                    cluster = labels.split('cluster="')[1].split('"')[0]
                    found[kind][cluster] = int(value)
        return found

    def images(self, **filters: str) -> list[Doc]:
        """Every image matching the filters (``name=``, ``status=``...), across all pages."""
        found: list[Doc] = []
        page: Doc = self._json("GET", "/v2/images", params=filters)
        while True:
            found += page["images"]
            if "next" not in page:
                return found
            page = self._json("GET", page["next"])

    def get(self, image_id: str) -> Doc:
        return self._json("GET", f"/v2/images/{image_id}")

    def create(self, **fields: Any) -> Doc:
        """A new queued image: ``name``, ``disk_format``, ``container_format``, properties."""
        return self._json("POST", "/v2/images", json=fields)

    def delete(self, image_id: str) -> None:
        self._json("DELETE", f"/v2/images/{image_id}")

    def delete_from_store(self, store: str, image_id: str) -> None:
        """Remove the image's data from one store; the image and its other copies stay."""
        self._json("DELETE", f"/v2/stores/{store}/{image_id}")

    def tasks(self, image_id: str) -> list[Doc]:
        """The image's import tasks, oldest first, each with ferry's ``job`` view."""
        found: list[Doc] = self._json("GET", f"/v2/images/{image_id}/tasks")["tasks"]
        return found

    # --- data ----------------------------------------------------------------------------
    def upload(
        self,
        image_id: str,
        data: Path | BinaryIO,
        size: int | None = None,
        *,
        store: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Stream a file or binary stream into a queued image, 8 MiB at a time."""
        if isinstance(data, Path):
            with data.open("rb") as f:
                self.upload(image_id, f, data.stat().st_size, store=store, progress=progress)
            return
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["x-openstack-image-size"] = str(size)
        if store:
            headers["x-image-meta-store"] = store

        def chunks() -> Iterator[bytes]:
            done = 0
            while chunk := data.read(CHUNK):
                yield chunk
                done += len(chunk)
                if progress:
                    progress(done)

        self._json("PUT", f"/v2/images/{image_id}/file", content=chunks(), headers=headers)

    def download(self, image_id: str, out: BinaryIO, *, progress: Progress | None = None) -> int:
        """Stream the image's data into ``out``; check it against Content-MD5; its size."""
        md5 = hashlib.md5(usedforsecurity=False)
        done = 0
        with self._call("GET", f"/v2/images/{image_id}/file") as r:
            if r.status_code == 204:
                raise errors.NoData(f"image {image_id} has no data")
            for chunk in r.iter_bytes(CHUNK):
                out.write(chunk)
                md5.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done)
            expected = r.headers.get("content-md5")
        if expected and expected != md5.hexdigest():
            raise errors.IntegrityError(
                f"image {image_id}: downloaded data has md5 {md5.hexdigest()}, "
                f"the server said {expected}"
            )
        return done

    # --- imports -------------------------------------------------------------------------
    def import_image(
        self,
        image_id: str,
        method: str,
        *,
        stores: Sequence[str] | None = None,
        all_stores: bool | None = None,
        allow_failure: bool | None = None,
        uri: str | None = None,
    ) -> None:
        """Start an import (``copy-image``, ``web-download``, ``glance-direct``); 202 only."""
        body: Doc = {"method": {"name": method, **({"uri": uri} if uri else {})}}
        if stores is not None:
            body["stores"] = list(stores)
        if all_stores is not None:
            body["all_stores"] = all_stores
        if allow_failure is not None:
            body["all_stores_must_succeed"] = not allow_failure
        self._json("POST", f"/v2/images/{image_id}/import", json=body)

    def wait(
        self,
        image_id: str,
        stores: Sequence[str],
        *,
        progress: JobProgress | None = None,
        poll: float = 0.5,
    ) -> Doc:
        """Poll until the image's newest import task is done; the image then.

        Raises FerryError with the task's message when the task failed or any of ``stores``
        lacks the image afterwards (``os_glance_failed_import``, even when failures were
        allowed). ``progress`` gets the task's bytes done and total at every poll.
        """
        while True:
            # Tasks first: once the task is done, the image read after it is final.
            tasks = self.tasks(image_id)
            image = self.get(image_id)
            task = tasks[-1] if tasks else None
            if task and progress:
                progress(task["job"]["bytes_done"], task["job"]["bytes_total"])
            if task is None or task["status"] in DONE:
                break
            time.sleep(poll)
        held = set(filter(None, image.get("stores", "").split(",")))
        failed = set(filter(None, image.get("os_glance_failed_import", "").split(",")))
        missing = sorted(failed | (set(stores) - held))
        if missing or (task and task["status"] == "failure"):
            where = f" into {', '.join(missing)}" if missing else ""
            why = task and task["message"]
            raise errors.FerryError(
                f"import of image {image_id}{where} failed" + (f": {why}" if why else "")
            )
        return image

    # --- volumes, snapshots, backups (Cinder v3) ------------------------------------------
    def volumes(self, availability_zone: str | None = None) -> list[Doc]:
        return self._list("volume", availability_zone=availability_zone)

    def volume(self, volume_id: str) -> Doc:
        return self._send("GET", "volume", volume_id)

    def create_volume(self, **fields: Any) -> Doc:
        """A volume: ``size`` (GiB), ``availability_zone``, ``imageRef``, ``snapshot_id``,
        ``source_volid``, ``missing_image``, ``name``, ``description``."""
        return self._send("POST", "volume", fields=fields)

    def delete_volume(self, volume_id: str) -> None:
        self._send("DELETE", "volume", volume_id)

    def snapshots(self, volume_id: str | None = None) -> list[Doc]:
        return self._list("snapshot", volume_id=volume_id)

    def create_snapshot(self, volume_id: str, **fields: Any) -> Doc:
        """A snapshot of the volume: ``name``, ``description``, ``force`` (if in-use)."""
        return self._send("POST", "snapshot", fields={"volume_id": volume_id, **fields})

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._send("DELETE", "snapshot", snapshot_id)

    def backups(self, volume_id: str | None = None) -> list[Doc]:
        return self._list("backup", volume_id=volume_id)

    def create_backup(self, volume_id: str, **fields: Any) -> Doc:
        """A backup of the volume (``name``, ``force``): full the first time, then incremental."""
        return self._send("POST", "backup", fields={"volume_id": volume_id, **fields})

    def delete_backup(self, backup_id: str) -> None:
        self._send("DELETE", "backup", backup_id)

    def restore_backup(
        self, backup_id: str, name: str | None = None, availability_zone: str | None = None
    ) -> Doc:
        """Restore into a new volume; ``{"backup_id", "volume_id", "volume_name"}``."""
        fields = {"name": name, "availability_zone": availability_zone}
        return self._send("POST", "backup", backup_id, "restore", fields=fields, key="restore")

    # --- servers (Nova v2.1) --------------------------------------------------------------
    def servers(self) -> list[Doc]:
        return self._list("server")

    def server(self, server_id: str) -> Doc:
        return self._send("GET", "server", server_id)

    def create_server(self, **fields: Any) -> Doc:
        """A server: ``name``, ``imageRef`` or ``volume_id``, ``boot_volume_size`` (GiB),
        ``availability_zone``, ``missing_image``. It may come back in ERROR, with a ``fault``."""
        return self._send("POST", "server", fields=fields)

    def delete_server(self, server_id: str) -> None:
        self._send("DELETE", "server", server_id)

    def stop_server(self, server_id: str) -> None:
        self._action(server_id, "os-stop", None)

    def start_server(self, server_id: str) -> None:
        self._action(server_id, "os-start", None)

    def create_server_image(self, server_id: str, name: str) -> str:
        """The server's disk as a new image, in its zone's store only; the image's id."""
        return str(self._action(server_id, "createImage", {"name": name})["image_id"])

    # --- plumbing ------------------------------------------------------------------------
    def _list(self, kind: str, **filters: str | None) -> list[Doc]:
        """A Cinder or Nova collection, filtered by the filters that are not None."""
        params = {k: v for k, v in filters.items() if v is not None}
        found: list[Doc] = self._json("GET", COLLECTIONS[kind], params=params)[f"{kind}s"]
        return found

    def _send(
        self, method: str, kind: str, *path: str, fields: Doc | None = None, key: str = ""
    ) -> Doc:
        """One Cinder or Nova request under ``kind``'s collection: ``fields`` without the
        Nones, wrapped as ``{key: fields}`` (key: ``kind``); the answer unwrapped ({} if
        the server sent nothing)."""
        key = key or kind
        body = None if fields is None else {key: {k: v for k, v in fields.items() if v is not None}}
        doc = self._json(method, "/".join((COLLECTIONS[kind], *path)), json=body)
        found: Doc = doc[key] if doc else {}
        return found

    def _action(self, server_id: str, action: str, arg: Doc | None) -> Doc:
        """Nova's ``POST /servers/{id}/action`` with ``{action: arg}``."""
        return self._json("POST", f"{COLLECTIONS['server']}/{server_id}/action", json={action: arg})

    def _json(self, method: str, path: str, **kwargs: Any) -> Doc:
        """One request; its JSON body ({} when empty)."""
        with self._call(method, path, **kwargs) as r:
            body = r.read()
        doc: Doc = r.json() if body else {}
        return doc

    @contextmanager
    def _call(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response that succeeded; transport and HTTP errors as FerryError."""
        try:
            with self._http.stream(method, path, **kwargs) as r:
                if r.is_error:
                    r.read()
                    cls = ERRORS.get(r.status_code, errors.FerryError)
                    raise cls(error_message(r))
                yield r
        except httpx.TransportError as exc:
            raise errors.BackendUnavailable(
                f"cannot reach the Image API at {self.url}: {exc or type(exc).__name__}; "
                "is `ferry up` running?"
            ) from exc


def error_message(r: httpx.Response) -> str:
    """The server's message on one line, from Glance's JSON, HTML or plain-text errors."""
    text = r.text
    if "json" in r.headers.get("content-type", ""):
        with suppress(ValueError):
            doc = r.json()
            if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
                doc = doc["error"]  # keystonemiddleware's (and Cinder's) {"error": {...}}
            text = str(doc.get("message") or "") if isinstance(doc, dict) else text
    elif "<h1>" in text:  # webob's page: the message follows the title
        text = text.split("</h1>", 1)[-1]
    # webob puts its generic explanation first and the specific reason last, <br />-separated.
    parts = [html.unescape(re.sub(r"<[^>]+>", " ", p)) for p in re.split(r"<br\s*/?>", text)]
    lines = [" ".join(p.split()) for p in parts if p.strip()]
    return lines[-1] if lines else f"{r.status_code} {r.reason_phrase}"
