"""A site's stores: each one a cluster's ``images`` pool, connected once and shared."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

from ferry.block import BlockImage, Cluster, ImageSpec, connect
from ferry.config import SiteConfig, StoreConfig
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


class Store:
    """One store of a site. The cluster connection is opened on first use."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._cluster: Cluster | None = None
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def cluster(self) -> Cluster:
        with self._lock:
            if self._cluster is None:
                if self.config.cluster is None:
                    raise InvalidRequest(f"store {self.id} has no cluster")
                try:
                    self._cluster = connect(
                        self.config.cluster, client=self.config.client, keyring=self.config.keyring
                    )
                except FerryError:
                    raise
                except Exception as exc:  # a driver that could not even load
                    raise BackendUnavailable(f"store {self.id}: {exc}") from exc
            return self._cluster

    def spec(self, image_id: str, snap: str | None = SNAP) -> ImageSpec:
        return ImageSpec(self.config.pool, image_id, snap)

    def location(self, image_id: str) -> RbdLocation:
        scheme = "rbd" if (self.config.cluster or "").startswith("ceph:") else "embedded"
        return RbdLocation(scheme, self.cluster.fsid, self.config.pool, image_id)

    def open_snap(self, image_id: str) -> BlockImage:
        """The image's data, read-only: ``images/<id>@snap``."""
        return self.cluster.open(self.spec(image_id))

    def delete(self, image_id: str) -> None:
        """Remove ``images/<id>`` and its protected snapshot, as Glance's RBD store does."""
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

    def __init__(self, site: SiteConfig) -> None:
        self._stores = {s.id: Store(s) for s in site.stores}
        self.default = next(s for s in self._stores.values() if s.config.default)

    def __iter__(self) -> Iterator[Store]:
        return iter(self._stores.values())

    def get(self, store_id: str) -> Store | None:
        return self._stores.get(store_id)

    @property
    def ids(self) -> list[str]:
        return list(self._stores)

    def close(self) -> None:
        for store in self:
            store.close()
