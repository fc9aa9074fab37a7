"""The embedded cluster: ferry's default backend, a directory with RBD's semantics."""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from pathlib import Path

from ferry.block.auth import (
    Client,
    OsdCaps,
    client_name,
    generate_key,
    keys_equal,
    read_keyring,
    validate_key,
    write_keyring,
)
from ferry.block.embedded import maintenance
from ferry.block.embedded.disk import TMP_MARK, Disk, Step
from ferry.block.embedded.header import Header, ParentLink, View, check_size
from ferry.block.embedded.image import EmbeddedImage
from ferry.block.embedded.layout import Layout, check_name
from ferry.block.embedded.maintenance import CheckReport, GcReport
from ferry.block.protocol import DEFAULT_ORDER, ChildRef, Closing, ImageSpec
from ferry.errors import (
    AlreadyExists,
    Conflict,
    FerryError,
    Forbidden,
    InUse,
    InvalidRequest,
    NotFound,
)
from ferry.permissions import DIR_MODE, FILE_MODE, make_dir, tighten

POOLS = ("images", "volumes", "vms", "backups")
FORMAT = 1
ADMIN_CAPS = {"mon": "allow *", "osd": "allow *", "mgr": "allow *"}


class EmbeddedCluster(Closing):
    """A cluster directory opened as one client; every verb checks that client's caps."""

    def __init__(self, layout: Layout, info: dict[str, str], client: Client) -> None:
        self.layout = layout
        self._info = info
        self._client = client

    # --- creation and opening --------------------------------------------------------------
    @classmethod
    def init(cls, root: Path, name: str, *, step: Step | None = None) -> Path:
        """Create a cluster with the four pools and client.admin; return the admin keyring."""
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
            raise InvalidRequest(f"bad cluster name {name!r}")
        root = Path(root)
        if (root / "cluster.json").exists():
            raise AlreadyExists(f"{root} already holds a cluster")
        make_dir(root, parents=True)
        root.chmod(DIR_MODE)  # also when it existed: it is the cluster's directory now
        disk = Disk(step)
        layout = Layout(root, disk)
        layout.chunks.create_dirs()
        layout.meta.create_dirs()
        make_dir(root / "pools")
        for pool in POOLS:
            make_dir(root / "pools" / pool)
        admin = Client("admin", generate_key(), dict(ADMIN_CAPS))
        keyring = root / f"{name}.client.admin.keyring"
        write_keyring(keyring, [admin])
        _write_auth(disk, root, {"admin": admin})
        info = {"name": name, "fsid": str(uuid.uuid4()), "format": str(FORMAT)}
        disk.commit(root / "cluster.json", json.dumps(info).encode())  # the init's commit
        return keyring

    @classmethod
    def connect(
        cls,
        root: Path,
        *,
        client: str = "admin",
        key: str | None = None,
        keyring: Path | None = None,
        step: Step | None = None,
    ) -> EmbeddedCluster:
        """Open as ``client.NAME``, authenticated by ``key`` or a keyring file.

        Without either, the keyring is ``DIR/<cluster>.client.<name>.keyring``, the place
        Ceph's tools look (``/etc/ceph/$cluster.$name.keyring``).
        """
        root = Path(root)
        try:
            info = json.loads((root / "cluster.json").read_text())
        except FileNotFoundError as exc:
            raise NotFound(f"no embedded cluster at {root} (create one with 'init')") from exc
        _tighten_modes(root)
        name = client_name(client)
        if key is None:
            keyring = keyring or root / f"{info['name']}.client.{name}.keyring"
            key = read_keyring(Path(keyring), name)
        known = _read_auth(root).get(name)
        if known is None or not keys_equal(known.key, key):
            raise Forbidden(f"authentication failed for client.{name}: Operation not permitted")
        return cls(Layout(root, Disk(step)), info, known)

    # --- identity ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._info["name"]

    @property
    def fsid(self) -> str:
        return self._info["fsid"]

    @property
    def client(self) -> str:
        return self._client.name

    def require(self, pool: str, *, write: bool) -> None:
        """Caps first (as Ceph answers EPERM before ENOENT), then the pool must exist."""
        self._client.require(pool, write=write)
        if not self.layout.pool_dir(pool).is_dir():
            raise NotFound(f"pool {pool!r} does not exist in cluster {self.name}")

    # --- pools and images --------------------------------------------------------------------
    def list_pools(self) -> list[str]:
        return self.layout.pools()

    def create_pool(self, pool: str) -> None:
        self._require_admin()
        check_name(pool, "pool")
        path = self.layout.pool_dir(pool)
        if path.exists():
            raise AlreadyExists(f"pool {pool!r} exists")
        make_dir(path)
        self.layout.disk.fsync_dirs([path.parent])

    def list_images(self, pool: str) -> list[str]:
        self.require(pool, write=False)
        return self.layout.image_names(pool)

    def create(self, pool: str, name: str, size: int, *, order: int = DEFAULT_ORDER) -> None:
        self.require(pool, write=True)
        check_name(name, "image")
        if not 12 <= order <= 26:
            raise InvalidRequest(f"order {order} is outside 12..26 (4 KiB..64 MiB objects)")
        check_size(size, order)
        header = Header(head=View(size, order, (), None), created=time.time())
        self._create_header(pool, name, header)

    def _create_header(self, pool: str, name: str, header: Header) -> None:
        try:
            with self.layout.shared(), self.layout.image_lock(pool, name):
                if self.layout.exists(pool, name):
                    raise AlreadyExists(f"block image {pool}/{name} already exists")
                self.layout.commit(pool, name, header)
        except AlreadyExists:
            raise
        except FerryError:  # a full disk, say: the image's lock file is all it left
            with contextlib.suppress(FerryError):
                maintenance.release(self.layout, image=(pool, name))
            raise

    def remove(self, pool: str, name: str) -> None:
        self.require(pool, write=True)
        with self.layout.shared(), self.layout.image_lock(pool, name):
            header = self.layout.read_header(pool, name)
            if header.snaps:
                raise InUse(
                    f"block image {pool}/{name} has {len(header.snaps)} snapshot(s): "
                    "remove them first"
                )
            self.layout.disk.remove(self.layout.header_path(pool, name))  # the commit point
            for parent in header.parent_snaps():
                self.forget_child(*parent, ImageSpec(pool, name))
        # As ``rbd rm`` deletes the image's objects: free its chunks that no other image
        # uses (an aborted upload or copy must give its space back). If this fails, gc will.
        with contextlib.suppress(FerryError):
            maintenance.release(self.layout, removed=header.views(), image=(pool, name))

    def clone(self, parent: ImageSpec, child_pool: str, child_name: str) -> None:
        """Clone a protected snapshot: a header with a parent link, constant time."""
        if parent.snap is None:
            raise InvalidRequest(f"clone needs a snapshot: {parent}@SNAP")
        self.require(parent.pool, write=False)
        self.require(child_pool, write=True)
        check_name(child_name, "image")
        lay = self.layout
        # Lock the parent so no unprotect can slip between the check and the child's commit.
        with lay.shared(), lay.image_lock(parent.pool, parent.name):
            ph = lay.read_header(parent.pool, parent.name)
            snap = ph.snap(parent.snap)
            if snap is None:
                raise NotFound(f"snapshot {parent} does not exist")
            if not snap.protected:
                raise Conflict(f"parent snapshot {parent} must be protected before cloning")
            with lay.image_lock(child_pool, child_name):
                if lay.exists(child_pool, child_name):
                    raise AlreadyExists(f"block image {child_pool}/{child_name} already exists")
                # The hint goes first: a crash before the header leaves a stale hint, never a
                # child its parent does not know about.
                marks = lay.children_dir(parent.pool, parent.name, snap.id)
                make_dir(marks, parents=True)
                lay.disk.write_new(marks / f"{child_pool}@{child_name}", b"")
                lay.disk.fsync_dirs([marks, marks.parent])
                link_view = View(
                    snap.view.size,
                    snap.view.order,
                    (),
                    ParentLink(parent.pool, parent.name, snap.name, snap.id, snap.view.size),
                )
                lay.commit(child_pool, child_name, Header(head=link_view, created=time.time()))

    def open(self, spec: ImageSpec, *, read_only: bool = False) -> EmbeddedImage:
        self.require(spec.pool, write=False)
        header = self.layout.read_header(spec.pool, spec.name)
        if spec.snap is not None and header.snap(spec.snap) is None:
            raise NotFound(f"snapshot {spec} does not exist")
        return EmbeddedImage(self, spec, read_only=read_only)

    # --- children hints ----------------------------------------------------------------------
    def children_of(self, pool: str, name: str, snap_id: int) -> list[ChildRef]:
        """Clones of ``pool/name@snap_id``: the hints, each confirmed by the child's header."""
        marks = self.layout.children_dir(pool, name, snap_id)
        if not marks.is_dir():
            return []
        found = []
        for mark in sorted(marks.iterdir()):
            child_pool, _, child = mark.name.partition("@")
            if TMP_MARK not in mark.name and self._is_child(child_pool, child, pool, name, snap_id):
                found.append(ChildRef(child_pool, child))
        return found

    def _is_child(self, cpool: str, cname: str, pool: str, name: str, snap_id: int) -> bool:
        try:
            header = self.layout.read_header(cpool, cname)
        except NotFound:
            return False
        return (pool, name, snap_id) in header.parent_snaps()

    def forget_child(self, pool: str, name: str, snap_id: int, child: ImageSpec) -> None:
        """Drop the hint once the child's header no longer points at the parent."""
        mark = self.layout.children_dir(pool, name, snap_id) / f"{child.pool}@{child.name}"
        if not self._is_child(child.pool, child.name, pool, name, snap_id):
            with contextlib.suppress(FileNotFoundError):
                self.layout.disk.remove(mark)

    # --- clients -----------------------------------------------------------------------------
    def _require_admin(self) -> None:
        if not self._client.is_admin:
            raise Forbidden(
                f"client.{self.client} may not manage the cluster (needs mon 'allow *')"
            )

    def auth_ls(self) -> list[Client]:
        self._require_admin()
        return sorted(_read_auth(self.layout.root).values(), key=lambda c: c.name)

    def auth_get(self, name: str) -> Client:
        self._require_admin()
        found = _read_auth(self.layout.root).get(client_name(name))
        if found is None:
            raise NotFound(f"client.{client_name(name)} does not exist")
        return found

    def auth_add(self, name: str, caps: dict[str, str], key: str | None = None) -> Client:
        """Add a client (like ``ceph auth add``/``import``): a new key unless one is given."""
        self._require_admin()
        OsdCaps.parse(caps.get("osd", ""))  # refuse caps that would never match
        new = Client(client_name(name), validate_key(key) if key else generate_key(), caps)
        with self.layout.exclusive():
            clients = _read_auth(self.layout.root)
            if new.name in clients:
                raise AlreadyExists(f"client.{new.name} exists")
            clients[new.name] = new
            _write_auth(self.layout.disk, self.layout.root, clients)
        return new

    def auth_del(self, name: str) -> None:
        self._require_admin()
        with self.layout.exclusive():
            clients = _read_auth(self.layout.root)
            if clients.pop(client_name(name), None) is None:
                raise NotFound(f"client.{client_name(name)} does not exist")
            _write_auth(self.layout.disk, self.layout.root, clients)

    # --- maintenance -------------------------------------------------------------------------
    def check(self) -> CheckReport:
        self._require_admin()
        return maintenance.check(self.layout)

    def gc(self) -> GcReport:
        self._require_admin()
        return maintenance.gc(self.layout)

    def close(self) -> None:
        """Stop the chunk writer threads; nothing else is held between calls."""
        self.layout.close()


def _tighten_modes(root: Path) -> None:
    """Take others' access to what an older ferry left readable: the directory (which
    guards everything in it), the clients' keys and the keyrings beside them."""
    tighten(root, DIR_MODE)
    for secret in (root / "auth.json", *root.glob("*.keyring")):
        tighten(secret, FILE_MODE)


def _read_auth(root: Path) -> dict[str, Client]:
    raw = json.loads((root / "auth.json").read_text())
    return {n: Client(n, c["key"], c["caps"]) for n, c in raw.items()}


def _write_auth(disk: Disk, root: Path, clients: dict[str, Client]) -> None:
    data = {c.name: {"key": c.key, "caps": c.caps} for c in clients.values()}
    disk.commit(root / "auth.json", json.dumps(data, indent=1).encode())
