"""A block image's header and its manifest, as stored by the embedded cluster.

The header (``pools/<pool>/<name>.json``) is small: size, object order, parent, lockers, and
for the head and each snapshot the ids of its manifest segments. A segment maps the object
indexes of one 1024-object stretch to chunk ids (or to ``ZERO``: a clone's object that is
zeros even though the parent has data there). A missing index reads from the parent within
the overlap, else as zeros. Snapshots freeze the segment list; a clone starts with none.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ferry.errors import InvalidRequest

OBJECTS_PER_SEGMENT = 1024
# The header lists one segment per 1024 objects, so its size grows with the image's: past
# 2^28 objects (1 PiB of 4 MiB objects, 2^18 segment entries) a create or resize is refused.
MAX_OBJECTS = 1 << 28
ZERO = "0"  # a segment entry meaning "all zeros here, do not read the parent"
Segment = dict[int, str]


def check_size(size: int, order: int) -> None:
    """Refuse a negative size, or one whose header would list too many segments."""
    if size < 0:
        raise InvalidRequest("size must not be negative")
    if size > MAX_OBJECTS << order:
        raise InvalidRequest(
            f"size {size} is larger than the most a block image of {1 << order}-byte objects "
            f"may have ({MAX_OBJECTS << order} bytes)"
        )


@dataclass(frozen=True)
class ParentLink:
    pool: str
    image: str
    snap: str
    snap_id: int
    overlap: int


@dataclass(frozen=True)
class View:
    """What reads see: the head or one snapshot."""

    size: int
    order: int
    segments: tuple[str | None, ...]
    parent: ParentLink | None

    @property
    def object_size(self) -> int:
        return 1 << self.order

    @property
    def num_objects(self) -> int:
        return -(-self.size // self.object_size)


@dataclass(frozen=True)
class Snap:
    id: int
    name: str
    protected: bool
    view: View
    created: float


@dataclass(frozen=True)
class Lock:
    client: str
    cookie: str
    address: str


@dataclass(frozen=True)
class Header:
    head: View
    created: float
    snaps: tuple[Snap, ...] = ()
    next_snap_id: int = 1
    lockers: tuple[Lock, ...] = ()
    features: tuple[str, ...] = ("layering",)
    version: int = field(default=1)

    def snap(self, name: str) -> Snap | None:
        return next((s for s in self.snaps if s.name == name), None)

    def snap_by_id(self, snap_id: int) -> Snap | None:
        return next((s for s in self.snaps if s.id == snap_id), None)

    def views(self) -> list[View]:
        return [self.head, *(s.view for s in self.snaps)]

    def parent_snaps(self) -> set[tuple[str, str, int]]:
        """Every (pool, image, snap id) the head or a snapshot reads from."""
        return {(p.pool, p.image, p.snap_id) for v in self.views() if (p := v.parent)}

    def with_head(self, **changes: Any) -> Header:
        return replace(self, head=replace(self.head, **changes))

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Header:
        d = json.loads(raw)
        return cls(
            head=_view(d["head"]),
            created=d["created"],
            snaps=tuple(
                Snap(s["id"], s["name"], s["protected"], _view(s["view"]), s["created"])
                for s in d["snaps"]
            ),
            next_snap_id=d["next_snap_id"],
            lockers=tuple(Lock(**lk) for lk in d["lockers"]),
            features=tuple(d["features"]),
            version=d["version"],
        )


def _view(d: dict[str, Any]) -> View:
    parent = d["parent"]
    return View(
        size=d["size"],
        order=d["order"],
        segments=tuple(d["segments"]),
        parent=ParentLink(**parent) if parent else None,
    )


def encode_segment(seg: Segment) -> bytes:
    return json.dumps({str(k): v for k, v in sorted(seg.items())}, separators=(",", ":")).encode()


def decode_segment(raw: bytes) -> Segment:
    return {int(k): v for k, v in json.loads(raw).items()}
