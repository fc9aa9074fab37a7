"""The Ceph driver: the block protocol over librbd, through Debian's python3-rados/python3-rbd.

Every native error (``rbd.*``, ``rados.*``) is translated at this boundary by :func:`_native`
into ferry's error tree, chained with ``from exc``, with Ceph's own wording (``Operation not
permitted``) at the end of the message, as the ``rbd`` command line prints it.

Two things librbd does not do the way the protocol wants, and how this driver covers them:

- librbd stores written zeros like any data. :meth:`CephImage.write` sends all-zero pieces as
  ``write_zeroes`` instead: that is a no-op where nothing is stored, removes (or, under a
  snapshot, hides) a whole object, and zeroes only a part of one. So zeros never allocate, and
  a diff since an older snapshot reports zeroed objects as ``exists=False``.
- librbd clips a write that runs past the end and writes the part that fits; ferry refuses the
  whole write before any byte goes down.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any

import rados
import rbd

from ferry.block.auth import client_name
from ferry.block.protocol import (
    DEFAULT_ORDER,
    ChildRef,
    Closing,
    Extent,
    ImageSpec,
    ImageStat,
    Locker,
    ParentInfo,
    SnapInfo,
)
from ferry.block.zero import zero_runs
from ferry.errors import (
    AlreadyExists,
    BackendUnavailable,
    Conflict,
    FerryError,
    Forbidden,
    InUse,
    InvalidRequest,
    NotFound,
    StorageFull,
)

# Format 2 with layering only: what Glance's and Cinder's RBD drivers create by default, and
# what any kernel client can map.
FEATURES = rbd.RBD_FEATURE_LAYERING
DIFF_WINDOW = 1024  # objects per diff_iterate call: the diff streams, memory stays flat

_FEATURE_NAMES = (
    (rbd.RBD_FEATURE_LAYERING, "layering"),
    (rbd.RBD_FEATURE_STRIPINGV2, "striping"),
    (rbd.RBD_FEATURE_EXCLUSIVE_LOCK, "exclusive-lock"),
    (rbd.RBD_FEATURE_OBJECT_MAP, "object-map"),
    (rbd.RBD_FEATURE_FAST_DIFF, "fast-diff"),
    (rbd.RBD_FEATURE_DEEP_FLATTEN, "deep-flatten"),
    (rbd.RBD_FEATURE_JOURNALING, "journaling"),
    (rbd.RBD_FEATURE_DATA_POOL, "data-pool"),
    (rbd.RBD_FEATURE_OPERATIONS, "operations"),
    (rbd.RBD_FEATURE_MIGRATING, "migrating"),
    (rbd.RBD_FEATURE_NON_PRIMARY, "non-primary"),
)

# Native error → ferry error; the first match wins (subclasses before their bases).
_Remap = Mapping[type[Exception], type[FerryError]]
_ERRORS: tuple[tuple[tuple[type[Exception], ...], type[FerryError]], ...] = (
    ((rbd.PermissionError, rados.PermissionError, rados.PermissionDeniedError), Forbidden),
    ((rbd.ImageNotFound, rbd.ObjectNotFound, rados.ObjectNotFound), NotFound),
    ((rbd.ImageExists, rbd.ObjectExists, rados.ObjectExists), AlreadyExists),
    ((rbd.ImageBusy, rbd.ImageHasSnapshots, rados.ObjectBusy), InUse),
    ((rbd.NoSpace, rbd.DiskQuotaExceeded, rados.NoSpace), StorageFull),
    (
        (
            rbd.InvalidArgument,
            rbd.ArgumentOutOfRange,
            rbd.ReadOnlyImage,
            rbd.FunctionNotSupported,
            rbd.OperationNotSupported,
            rados.InvalidArgumentError,
        ),
        InvalidRequest,
    ),
    (
        (
            rbd.Timeout,
            rbd.ConnectionShutdown,
            rbd.IOError,
            rados.TimedOut,
            rados.InterruptedOrTimeoutError,
            rados.ConnectionShutdown,
            rados.NotConnected,
            rados.IOError,
        ),
        BackendUnavailable,
    ),
)


@contextmanager
def _native(what: str, client: str, remap: _Remap | None = None) -> Iterator[None]:
    """Translate librados/librbd errors raised inside into ferry's, ``from`` the native one.

    The message reads like rbd's: ``<what> as client.<name>: <strerror>``.
    """
    try:
        yield
    except (rbd.Error, rados.Error) as exc:
        cls = next((to for frm, to in (remap or {}).items() if isinstance(exc, frm)), None)
        if cls is None:
            cls = next((to for frm, to in _ERRORS if isinstance(exc, frm)), FerryError)
        code = getattr(exc, "errno", None)
        reason = os.strerror(abs(code)) if isinstance(code, int) and code else str(exc)
        raise cls(f"{what} as client.{client}: {reason}") from exc


class CephCluster(Closing):
    """One Ceph cluster, connected as one cephx client (one ``rados.Rados`` handle)."""

    def __init__(self, handle: Any, name: str, client: str) -> None:
        self._rados = handle
        self._rbd = rbd.RBD()
        self._name = name
        self._client = client
        self._fsid = str(handle.get_fsid())
        self._instance = f"client.{handle.get_instance_id()}"
        self._ioctxs: dict[str, Any] = {}
        self._images: weakref.WeakSet[CephImage] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def connect(
        cls,
        conf: Path,
        *,
        client: str = "admin",
        keyring: Path | None = None,
        key: str | None = None,
        timeout: int = 10,
        op_timeout: int = 60,
    ) -> CephCluster:
        """Connect as ``client.NAME`` with the cluster's conf, authenticated by ``key``, else
        ``keyring``, else the conf's keyring.

        ``timeout`` bounds connecting and each monitor request, ``op_timeout`` each OSD
        request (librados would wait forever on a down OSD). ``Rados.connect(timeout=)`` is
        ignored by librados, so both go in as config options.
        """
        name = client_name(client)
        options = {
            "client_mount_timeout": str(timeout),
            "rados_mon_op_timeout": str(timeout),
            "rados_osd_op_timeout": str(op_timeout),
        }
        if key is not None:
            options["key"] = key
        elif keyring is not None:
            options["keyring"] = str(keyring)
        cluster = Path(conf).stem  # librados takes $cluster from the conf's file name too
        with _native(f"connect to cluster {cluster} ({conf})", name):
            handle = rados.Rados(conffile=str(conf), rados_id=name, conf=options)
            try:
                handle.connect()
                return cls(handle, cluster, name)
            except BaseException:
                handle.shutdown()
                raise

    # --- identity ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def fsid(self) -> str:
        return self._fsid

    @property
    def client(self) -> str:
        return self._client

    @property
    def instance(self) -> str:
        """This connection's entity as Ceph shows it to others (``client.4123``)."""
        return self._instance

    def native(self, what: str, remap: _Remap | None = None) -> AbstractContextManager[None]:
        """The error translation for a call on this cluster (see :func:`_native`)."""
        return _native(what, self._client, remap)

    def ioctx(self, pool: str) -> Any:
        """The pool's I/O context, opened once per pool and kept until :meth:`close`."""
        with self._lock:
            if self._closed:
                raise InvalidRequest(f"cluster {self._name} is closed")
            io = self._ioctxs.get(pool)
            if io is None:
                with self.native(f"open pool {pool!r} in cluster {self._name}"):
                    io = self._ioctxs[pool] = self._rados.open_ioctx(pool)
            return io

    # --- verbs -------------------------------------------------------------------------------
    def list_pools(self) -> list[str]:
        with self.native(f"list pools of cluster {self._name}"):
            return sorted(str(p) for p in self._rados.list_pools())

    def list_images(self, pool: str) -> list[str]:
        io = self.ioctx(pool)
        with self.native(f"list block images in pool {pool!r}"):
            return sorted(str(n) for n in self._rbd.list(io))

    def create(self, pool: str, name: str, size: int, *, order: int = DEFAULT_ORDER) -> None:
        if size < 0:
            raise InvalidRequest("size must not be negative")
        io = self.ioctx(pool)
        with self.native(f"create block image {pool}/{name}"):
            self._rbd.create(io, name, size, order=order, old_format=False, features=FEATURES)

    def remove(self, pool: str, name: str) -> None:
        io = self.ioctx(pool)
        with self.native(f"remove block image {pool}/{name}"):
            self._rbd.remove(io, name)

    def clone(self, parent: ImageSpec, child_pool: str, child_name: str) -> None:
        if parent.snap is None:
            raise InvalidRequest(f"clone parent {parent} must name a snapshot (POOL/NAME@SNAP)")
        p_io, c_io = self.ioctx(parent.pool), self.ioctx(child_pool)
        with self.native(f"clone {parent} into {child_pool}/{child_name}"):
            try:
                self._rbd.clone(p_io, parent.name, parent.snap, c_io, child_name, features=FEATURES)
            except rbd.InvalidArgument as exc:  # clone v1 wants a protected snapshot
                with rbd.Image(p_io, parent.name, snapshot=parent.snap, read_only=True) as p:
                    protected = p.is_protected_snap(parent.snap)
                if not protected:
                    raise Conflict(
                        f"snapshot {parent} is not protected: protect it before cloning"
                    ) from exc
                raise

    def open(self, spec: ImageSpec, *, read_only: bool = False) -> CephImage:
        io = self.ioctx(spec.pool)
        read_only = read_only or spec.snap is not None
        with self.native(f"open block image {spec}"):
            handle = rbd.Image(io, spec.name, snapshot=spec.snap, read_only=read_only)
            try:
                image = CephImage(self, io, handle, spec, read_only=read_only)
            except BaseException:
                handle.close()
                raise
        self._images.add(image)
        return image

    def close(self) -> None:
        """Close every image opened here, every pool context, then the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            images, self._images = list(self._images), weakref.WeakSet()
            ioctxs, self._ioctxs = list(self._ioctxs.values()), {}
        for image in images:
            image.close()
        with self.native(f"close cluster {self._name}"):
            for io in ioctxs:
                io.close()
            self._rados.shutdown()


class CephImage(Closing):
    """An open librbd image, at its head or (read-only) at one snapshot."""

    def __init__(
        self, cluster: CephCluster, ioctx: Any, handle: Any, spec: ImageSpec, *, read_only: bool
    ) -> None:
        self._cluster = cluster
        self._ioctx = ioctx
        self._handle: Any = handle
        self._spec = spec
        self._read_only = read_only
        self._object_size = int(handle.stat()["obj_size"])
        self._lock = threading.Lock()

    @property
    def spec(self) -> ImageSpec:
        return self._spec

    # --- helpers -----------------------------------------------------------------------------
    def _img(self) -> Any:
        handle = self._handle
        if handle is None:
            raise InvalidRequest(f"block image {self._spec} is closed")
        return handle

    def _native(self, verb: str, remap: _Remap | None = None) -> AbstractContextManager[None]:
        return self._cluster.native(f"{verb} {self._spec}", remap)

    def _writable(self) -> Any:
        img = self._img()
        if self._read_only:
            raise InvalidRequest(f"{self._spec} is read-only (a snapshot or opened read-only)")
        return img

    def _snap_spec(self, snap: str) -> str:
        return f"{self._spec.pool}/{self._spec.name}@{snap}"

    # --- I/O ---------------------------------------------------------------------------------
    def stat(self) -> ImageStat:
        img = self._img()
        with self._native("stat"):
            info = img.stat()
            features = int(img.features())
            parent = self._parent(img)
            protected = bool(self._spec.snap and img.is_protected_snap(self._spec.snap))
            lockers = _lockers(img.list_lockers())
            snap_count = len(_user_snaps(img))
        return ImageStat(
            pool=self._spec.pool,
            name=self._spec.name,
            snap=self._spec.snap,
            size=int(info["size"]),
            object_size=int(info["obj_size"]),
            features=tuple(name for bit, name in _FEATURE_NAMES if features & bit),
            parent=parent,
            protected=protected,
            lockers=tuple(
                Locker(
                    # Ceph names a lock holder by its connection (client.4123); ours is
                    # shown as our cephx name, others as Ceph shows them.
                    self._cluster.client
                    if entity == self._cluster.instance
                    else entity.removeprefix("client."),
                    cookie,
                    address,
                )
                for entity, cookie, address in lockers
            ),
            snap_count=snap_count,
        )

    @staticmethod
    def _parent(img: Any) -> ParentInfo | None:
        try:
            pool, image, snap = img.parent_info()
        except rbd.ImageNotFound:
            return None  # librbd's way of saying "no parent"
        return ParentInfo(str(pool), str(image), str(snap), int(img.overlap()))

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise InvalidRequest("offset and length must not be negative")
        img = self._img()
        with self._native("read from"):
            # Clip here: the binding allocates ``length`` bytes before librbd clips, and
            # librbd refuses an offset past the end instead of returning nothing.
            length = min(length, max(0, int(img.size()) - offset))
            data: bytes = img.read(offset, length) if length else b""
        return data

    def write(self, offset: int, data: bytes | memoryview) -> int:
        view = memoryview(data).cast("B")
        img = self._writable()
        with self._native("write to"):
            size = int(img.size())
            if offset < 0 or offset + len(view) > size:
                raise InvalidRequest(
                    f"write of {len(view)} bytes at {offset} is outside {self._spec} (size {size})"
                )
            for start, end, zero in zero_runs(offset, view, self._object_size):
                if zero:  # never allocates; frees (or, under a snapshot, hides) whole objects
                    img.write_zeroes(offset + start, end - start)
                else:  # one call per run of objects, so librbd sends them in parallel
                    img.write(bytes(view[start:end]), offset + start)
        return len(view)

    def resize(self, size: int) -> None:
        if size < 0:
            raise InvalidRequest("size must not be negative")
        img = self._writable()
        with self._native("resize"):
            img.resize(size)

    # --- snapshots ---------------------------------------------------------------------------
    def list_snaps(self) -> list[SnapInfo]:
        img = self._img()
        with self._native("list snapshots of"):
            snaps = []
            for s in _user_snaps(img):
                protected = bool(img.is_protected_snap(s["name"]))
                snaps.append(SnapInfo(int(s["id"]), str(s["name"]), int(s["size"]), protected))
            return snaps

    def create_snap(self, name: str) -> None:
        img = self._writable()
        with self._cluster.native(f"create snapshot {self._snap_spec(name)}"):
            img.create_snap(name)

    def remove_snap(self, name: str) -> None:
        img = self._writable()
        with self._cluster.native(f"remove snapshot {self._snap_spec(name)}"):
            img.remove_snap(name)

    def protect_snap(self, name: str) -> None:
        img = self._writable()
        # librbd answers EBUSY for "already protected": that is a state conflict.
        with self._cluster.native(
            f"protect snapshot {self._snap_spec(name)}", {rbd.ImageBusy: Conflict}
        ):
            img.protect_snap(name)

    def unprotect_snap(self, name: str) -> None:
        img = self._writable()
        with self._cluster.native(f"unprotect snapshot {self._snap_spec(name)}"):
            img.unprotect_snap(name)

    def children(self, snap: str) -> list[ChildRef]:
        self._img()
        with self._cluster.native(f"list children of {self._snap_spec(snap)}"):
            with rbd.Image(self._ioctx, self._spec.name, snapshot=snap, read_only=True) as at:
                kids = at.list_children2()
            return [ChildRef(str(k["pool"]), str(k["image"])) for k in kids if not k["trash"]]

    # --- layering ----------------------------------------------------------------------------
    def flatten(self) -> None:
        img = self._writable()
        with self._native("flatten"):
            img.flatten()

    # --- diff --------------------------------------------------------------------------------
    def diff(
        self, from_snap: str | None = None, *, include_parent: bool = True
    ) -> Iterator[Extent]:
        img = self._img()
        what = "diff" + (f" since @{from_snap}" if from_snap else "")
        with self._native(what):
            size = int(img.size())
            window = self._object_size * DIFF_WINDOW
        run: Extent | None = None
        for start in range(0, size, window):
            found: list[Extent] = []

            def seen(offset: int, length: int, exists: bool, found: list[Extent] = found) -> None:
                found.append(Extent(offset, min(length, size - offset), bool(exists)))

            with self._native(what):
                img.diff_iterate(
                    start,
                    min(window, size - start),
                    from_snap,
                    seen,
                    include_parent=include_parent,
                    whole_object=True,  # object-granular, as the protocol's diff is
                )
            for ext in found:
                if run and run.end == ext.offset and run.exists == ext.exists:
                    run = Extent(run.offset, run.length + ext.length, run.exists)
                    continue
                if run:
                    yield run
                run = ext
        if run:
            yield run

    # --- advisory locks ----------------------------------------------------------------------
    def lock_exclusive(self, cookie: str) -> None:
        img = self._writable()
        # EBUSY: another cookie or another connection holds it. EEXIST: this connection
        # already holds it under this cookie, which is fine.
        with (
            self._native(f"lock ({cookie!r})", {rbd.ImageBusy: Conflict}),
            suppress(rbd.ImageExists),
        ):
            img.lock_exclusive(cookie)

    def unlock(self, cookie: str) -> None:
        img = self._writable()
        with self._native(f"unlock ({cookie!r})"):
            img.unlock(cookie)

    # --- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            with self._native("close"):
                handle.close()


def _user_snaps(img: Any) -> list[dict[str, Any]]:
    """Snapshots a user made (not clone v2's trashed or group snapshots)."""
    user = rbd.RBD_SNAP_NAMESPACE_TYPE_USER
    return [s for s in img.list_snaps() if s.get("namespace", user) == user]


def _lockers(info: Any) -> list[tuple[str, str, str]]:
    """``list_lockers()`` gives ``[]`` when unlocked, else a dict with the lockers."""
    if not info:
        return []
    return [(str(c), str(k), str(a)) for c, k, a in info["lockers"]]
