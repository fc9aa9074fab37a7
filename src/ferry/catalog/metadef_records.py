"""The records of metadata definitions (Glance's metadefs) as the catalogue keeps them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ferry.catalog.records import utcnow

_UNSET = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class _Stamped:
    """When a record was made and last changed (both now, for a record about to be stored)."""

    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = _UNSET  # the created_at when not given

    def __post_init__(self) -> None:
        if self.updated_at is _UNSET:
            object.__setattr__(self, "updated_at", self.created_at)


@dataclass(frozen=True)
class NamespaceRecord(_Stamped):
    namespace: str
    owner: str
    display_name: str | None = None
    description: str | None = None
    visibility: str = "private"
    protected: bool = False


@dataclass(frozen=True)
class ResourceTypeRecord(_Stamped):
    name: str


@dataclass(frozen=True)
class AssociationRecord(_Stamped):
    """A namespace's association with a resource type (named here by the type's name)."""

    name: str
    prefix: str | None = None
    properties_target: str | None = None


@dataclass(frozen=True)
class ObjectRecord(_Stamped):
    name: str
    description: str | None = None
    required: list[str] | None = None
    properties: dict[str, Any] = field(default_factory=dict)  # name -> property schema


@dataclass(frozen=True)
class PropertyRecord(_Stamped):
    name: str
    schema: dict[str, Any]  # the property's JSON schema, without its name


@dataclass(frozen=True)
class TagRecord(_Stamped):
    name: str


Definition = ObjectRecord | PropertyRecord | TagRecord


@dataclass(frozen=True)
class Contents:
    """What a namespace defines."""

    associations: list[AssociationRecord] = field(default_factory=list)
    objects: list[ObjectRecord] = field(default_factory=list)
    properties: list[PropertyRecord] = field(default_factory=list)
    tags: list[TagRecord] = field(default_factory=list)


@dataclass(frozen=True)
class NamespaceQuery:
    """Which namespaces to list: those ``project`` may see (every one when ``sees_all``),
    filtered, sorted and paged on from the ``marker`` namespace."""

    project: str | None
    sees_all: bool = False
    visibility: str | None = None
    resource_types: Sequence[str] = ()
    sort_key: str = "created_at"
    sort_dir: str = "desc"
    marker: str | None = None
    limit: int | None = None
