"""The guide's three sites in this process: each with its own stores, image, import and
volume services over one shared catalogue; the clusters embedded or real Ceph."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ferry.block import BlockImage, Cluster, ImageSpec, connect
from ferry.catalog import Catalog, ImageRecord
from ferry.config import Config, parse
from ferry.images.imports import Imports
from ferry.images.service import ImageService
from ferry.images.stores import Stores
from ferry.topology import provision
from ferry.volumes import VolumeService
from tests.test_sites import SITES, write_topology

MiB = 1 << 20


@dataclass
class Site:
    name: str
    images: ImageService
    imports: Imports
    volumes: VolumeService

    def upload(self, data: bytes, name: str = "cirros") -> ImageRecord:
        doc = {"name": name, "disk_format": "raw", "container_format": "bare"}
        record = self.images.create(doc)
        upload = self.images.start_upload(record.id, None, len(data))
        for pos in range(0, len(data), 8 * MiB):
            upload.feed(data[pos : pos + 8 * MiB])
        return upload.finish()

    def copy(self, image_id: str, store: str) -> None:
        self.imports.ensure(image_id, store, worker=f"test-{self.name}")

    def stores(self, image_id: str) -> set[str]:
        return set(self.images.get(image_id).stores)

    def traffic(self) -> dict[str, tuple[int, int]]:
        """(read, written) bytes per store of this site so far."""
        return {s.id: (s.traffic.read, s.traffic.written) for s in self.images.stores}


@dataclass
class Guide:
    config: Config
    targets: dict[str, str]  # cluster -> what ferry.block.connect takes
    sites: dict[str, Site]
    kind: str

    def cluster(self, name: str) -> Cluster:
        return connect(self.targets[name])

    def stat(self, cluster: str, spec: str) -> tuple[int, str | None]:
        """(size, parent) of a block image, read as the cluster's admin."""
        with self.cluster(cluster) as c, c.open(ImageSpec.parse(spec)) as image:
            st = image.stat()
        return st.size, str(st.parent) if st.parent else None

    def digest(self, cluster: str, spec: str, size: int | None = None) -> str:
        with self.cluster(cluster) as c, c.open(ImageSpec.parse(spec), read_only=True) as image:
            return sha(image, size)


def sha(image: BlockImage, size: int | None = None) -> str:
    h = hashlib.sha256()
    end = image.stat().size if size is None else size
    for pos in range(0, end, 8 * MiB):
        h.update(image.read(pos, min(8 * MiB, end - pos)))
    return h.hexdigest()


def random_image(size: int = 12 * MiB) -> bytes:
    """Random data with a 4 MiB hole, so zero objects are exercised too."""
    data = bytearray(os.urandom(size))
    data[4 * MiB : 8 * MiB] = bytes(4 * MiB)
    return bytes(data)


def build(tmp: Path, kind: str, **compute: object) -> Guide:
    path, targets = write_topology(tmp, kind)
    raw = yaml.safe_load(path.read_text())
    for site in raw["sites"].values():
        site["imports"]["workers"] = 0
        if compute:
            site["compute"] = dict(compute)
    config = parse(raw)
    provision(config)
    sites = {}
    for name in SITES:
        stores = Stores(config, name)
        catalog = Catalog(config.catalog, stores.catalog_keys)
        catalog.migrate()
        images = ImageService(catalog, stores, config.owner)
        imports = Imports(images, name, config.site(name).imports)
        sites[name] = Site(name, images, imports, VolumeService(config, name, images, imports))
    return Guide(config, targets, sites, kind)


def close(guide: Guide) -> None:
    for site in guide.sites.values():
        site.images.stores.close()
        site.images.catalog.close()


@pytest.fixture(params=["embedded", pytest.param("ceph", marks=pytest.mark.ceph)])
def guide(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Guide]:
    g = build(tmp_path, request.param)
    yield g
    close(g)
