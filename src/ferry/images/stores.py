"""A site's stores: each one a cluster's ``images`` pool, connected once and shared."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from ferry.block import BlockImage, Cluster, ImageSpec, connect
from ferry.catalog.records import Location
from ferry.config import Config, StoreRef
from ferry.errors import BackendUnavailable, FerryError, InvalidRequest

SNAP = "snap"  # Glance's RBD store: an image's data is images/<id>@snap, protected


@dataclass(frozen=True)
class RbdLocation:
    """Glance's location URL for RBD: ``rbd://<fsid>/<pool>/<image>/<snap>``.

    Embedded clusters use the same shape under the scheme ``embedded``.
    """

    scheme: str
    fsid: str
    pool: str
    image: str
    snap: str = SNAP

    def __str__(self) -> str:
        return f"{self.scheme}://{self.fsid}/{self.pool}/{self.image}/{self.snap}"

    @classmethod
    def parse(cls, url: str) -> RbdLocation:
        scheme, sep, rest = url.partition("://")
        parts = rest.split("/")
        if not sep or scheme not in ("rbd", "embedded") or len(parts) != 4:
            raise InvalidRequest(f"not an rbd location: {url!r}")
        return cls(scheme, *parts)


class Traffic:
    """Bytes a site read from and wrote to one store's cluster, for ``/metrics``."""

    def __init__(self) -> None:
        self.read = 0
        self.written = 0
        self._lock = threading.Lock()

    def add(self, *, read: int = 0, written: int = 0) -> None:
        with self._lock:
            self.read += read
            self.written += written


class _Counted:
    """A block image whose reads and writes are added to a store's traffic."""

    def __init__(self, image: BlockImage, traffic: Traffic) -> None:
        self._image = image
        self._traffic = traffic

    def read(self, offset: int, length: int) -> bytes:
        data = self._image.read(offset, length)
        self._traffic.add(read=len(data))
        return data

    def write(self, offset: int, data: bytes | memoryview) -> int:
        n = self._image.write(offset, data)
        self._traffic.add(written=len(data))
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._image, name)

    def __enter__(self) -> _Counted:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._image.close()


class Store:
    """One store of a site. The cluster connection is opened on first use."""

    def __init__(self, ref: StoreRef) -> None:
        self.ref = ref
        self.config = ref.config
        self.traffic = Traffic()
        self._cluster: Cluster | None = None
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def cluster(self) -> Cluster:
        with self._lock:
            if self._cluster is None:
                if self.ref.cluster is None:
                    raise InvalidRequest(f"store {self.id} has no cluster")
                try:
                    self._cluster = connect(
                        self.ref.cluster.target,
                        client=self.ref.client,
                        keyring=self.ref.keyring,
                        key=self.ref.key,
                    )
                except FerryError:
                    raise
                except Exception as exc:  # a driver that could not even load
                    raise BackendUnavailable(f"store {self.id}: {exc}") from exc
            return self._cluster

    def spec(self, image_id: str, snap: str | None = SNAP) -> ImageSpec:
        return ImageSpec(self.config.pool, image_id, snap)

    def location(self, image_id: str) -> RbdLocation:
        scheme = "rbd" if self.ref.cluster and self.ref.cluster.ceph else "embedded"
        return RbdLocation(scheme, self.cluster.fsid, self.config.pool, image_id)

    def active_location(self, image_id: str) -> Location:
        """The catalogue's record of the image's data in this store."""
        return Location(self.id, str(self.location(image_id)), "active")

    def open(self, spec: ImageSpec) -> BlockImage:
        """A block image of this store; its data traffic is counted."""
        return cast(BlockImage, _Counted(self.cluster.open(spec), self.traffic))

    def open_snap(self, image_id: str) -> BlockImage:
        """The image's data, read-only: ``images/<id>@snap``."""
        return self.open(self.spec(image_id))

    def delete(self, image_id: str) -> None:
        """Remove ``images/<id>`` and its protected snapshot, as Glance's RBD store does."""
        if self.config.type == "http":
            return  # the data is at its URL: not the store's to remove (Glance's http store)
        cluster = self.cluster
        with cluster.open(self.spec(image_id, None)) as image:
            for snap in image.list_snaps():
                if snap.protected:
                    image.unprotect_snap(snap.name)
                image.remove_snap(snap.name)
        cluster.remove(self.config.pool, image_id)

    def in_use(self, image_id: str) -> bool:
        """True when clones (volumes, instance disks) hang off ``images/<id>@snap``."""
        try:
            with self.cluster.open(self.spec(image_id, None)) as image:
                return bool(image.children(SNAP))
        except FerryError:
            return False

    def close(self) -> None:
        with self._lock:
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None


class Stores:
    """The stores of one site, in configuration order."""

    def __init__(self, config: Config, site: str) -> None:
        self._stores = {ref.config.id: Store(ref) for ref in config.stores(site)}
        self.default = next(s for s in self._stores.values() if s.config.default)

    def __iter__(self) -> Iterator[Store]:
        return iter(self._stores.values())

    def get(self, store_id: str) -> Store | None:
        return self._stores.get(store_id)

    @property
    def ids(self) -> list[str]:
        return list(self._stores)

    @property
    def catalog_keys(self) -> dict[str, str]:
        """Store id → how the shared catalogue names that store (see ``StoreRef``)."""
        return {s.id: s.ref.key_in_catalog for s in self}

    def close(self) -> None:
        for store in self:
            store.close()
