"""The block protocol: RBD's verbs, small and typed.

A cluster holds pools; a pool holds block images; a block image has a size, data at offsets,
snapshots, and maybe a parent (a protected snapshot it was cloned from). Every driver
implements exactly these two protocols; conveniences (import, export, copy, ``ls -l``) are plain
functions in :mod:`ferry.block.ops`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from ferry.errors import InvalidRequest

DEFAULT_ORDER = 22  # RBD's default: 4 MiB objects
FEATURES = ("layering",)


@dataclass(frozen=True)
class ImageSpec:
    """``pool/name[@snap]``, as rbd's command line writes it."""

    pool: str
    name: str
    snap: str | None = None

    @classmethod
    def parse(cls, text: str, *, default_pool: str | None = None) -> ImageSpec:
        """Parse ``pool/name[@snap]``; ``name`` alone uses ``default_pool``."""
        rest, _, snap = text.partition("@")
        pool, slash, name = rest.rpartition("/")
        if not slash:
            if default_pool is None:
                raise InvalidRequest(f"image spec {text!r} must be POOL/NAME[@SNAP]")
            pool = default_pool
        if not pool or not name or (_ and not snap):
            raise InvalidRequest(f"image spec {text!r} must be POOL/NAME[@SNAP]")
        return cls(pool, name, snap or None)

    def __str__(self) -> str:
        return f"{self.pool}/{self.name}" + (f"@{self.snap}" if self.snap else "")


@dataclass(frozen=True)
class ParentInfo:
    """Where a clone reads its unwritten ranges from, up to ``overlap`` bytes."""

    pool: str
    image: str
    snap: str
    overlap: int

    def __str__(self) -> str:
        return f"{self.pool}/{self.image}@{self.snap}"


@dataclass(frozen=True)
class SnapInfo:
    """One snapshot of a block image."""

    id: int
    name: str
    size: int
    protected: bool


@dataclass(frozen=True)
class Extent:
    """A byte range of a diff: data there (``exists``) or zeroed/discarded."""

    offset: int
    length: int
    exists: bool = True

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class Locker:
    """An advisory exclusive lock, as ``rbd lock add`` records it."""

    client: str
    cookie: str
    address: str


@dataclass(frozen=True)
class ChildRef:
    """A clone of a snapshot: the pool and name of the child block image."""

    pool: str
    image: str

    def __str__(self) -> str:
        return f"{self.pool}/{self.image}"


@dataclass(frozen=True)
class ImageStat:
    """What ``rbd info`` shows of a block image (or of one of its snapshots)."""

    pool: str
    name: str
    snap: str | None
    size: int
    object_size: int
    features: tuple[str, ...]
    parent: ParentInfo | None
    protected: bool
    lockers: tuple[Locker, ...]
    snap_count: int

    @property
    def order(self) -> int:
        return self.object_size.bit_length() - 1

    @property
    def num_objects(self) -> int:
        return -(-self.size // self.object_size)


class Closing:
    """``with`` support for anything with a ``close()``: drivers inherit it."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class BlockImage(Protocol):
    """An open block image, at its head or (read-only) at one snapshot."""

    @property
    def spec(self) -> ImageSpec: ...

    def stat(self) -> ImageStat: ...
    def read(self, offset: int, length: int) -> bytes: ...
    def write(self, offset: int, data: bytes | memoryview) -> int: ...
    def resize(self, size: int) -> None: ...

    def list_snaps(self) -> list[SnapInfo]: ...
    def create_snap(self, name: str) -> None: ...
    def remove_snap(self, name: str) -> None: ...
    def protect_snap(self, name: str) -> None: ...
    def unprotect_snap(self, name: str) -> None: ...

    def flatten(self) -> None: ...
    def children(self, snap: str) -> list[ChildRef]: ...

    def diff(
        self, from_snap: str | None = None, *, include_parent: bool = True
    ) -> Iterator[Extent]:
        """Extents that differ between ``from_snap`` (or nothing) and this view.

        From nothing and with ``include_parent``, the parent's data within the overlap counts
        as this image's own (what a full copy must move); without it only what was written
        into this image counts (what ``du`` reports).
        """
        ...

    def lock_exclusive(self, cookie: str) -> None: ...
    def unlock(self, cookie: str) -> None: ...

    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Cluster(Protocol):
    """One site's block storage, opened as one client."""

    @property
    def name(self) -> str: ...
    @property
    def fsid(self) -> str: ...
    @property
    def client(self) -> str: ...

    def list_pools(self) -> list[str]: ...
    def list_images(self, pool: str) -> list[str]: ...
    def create(self, pool: str, name: str, size: int, *, order: int = DEFAULT_ORDER) -> None: ...
    def remove(self, pool: str, name: str) -> None: ...
    def clone(self, parent: ImageSpec, child_pool: str, child_name: str) -> None: ...
    def open(self, spec: ImageSpec, *, read_only: bool = False) -> BlockImage: ...

    def close(self) -> None: ...
