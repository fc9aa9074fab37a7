"""The block layer: RBD's semantics over an embedded cluster (a directory) or real Ceph."""

from __future__ import annotations

from pathlib import Path

from ferry.block.protocol import (
    DEFAULT_ORDER,
    BlockImage,
    ChildRef,
    Cluster,
    Extent,
    ImageSpec,
    ImageStat,
    Locker,
    ParentInfo,
    SnapInfo,
)

__all__ = [
    "DEFAULT_ORDER",
    "BlockImage",
    "ChildRef",
    "Cluster",
    "Extent",
    "ImageSpec",
    "ImageStat",
    "Locker",
    "ParentInfo",
    "SnapInfo",
    "connect",
]


def connect(
    target: str, *, client: str = "admin", keyring: Path | None = None, key: str | None = None
) -> Cluster:
    """Open a cluster: ``ceph:CONF`` for Ceph, any other text is an embedded cluster's directory.

    The client authenticates by ``key`` if given, else by ``keyring``, else by the keyring
    where Ceph's tools would look for it.
    """
    if target.startswith("ceph:"):
        from ferry.block.ceph import CephCluster  # imports librados only when asked for

        return CephCluster.connect(Path(target[5:]), client=client, keyring=keyring, key=key)
    from ferry.block.embedded import EmbeddedCluster

    return EmbeddedCluster.connect(Path(target), client=client, keyring=keyring, key=key)
