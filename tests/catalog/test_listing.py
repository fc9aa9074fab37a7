"""Listing images: every filter kind, sort keys, and marker paging."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ferry.catalog import Catalog, ImageRecord
from ferry.errors import InvalidRequest

T0 = datetime(2026, 11, 21, 8, 0, 0, tzinfo=UTC)


def ids(images: Sequence[ImageRecord]) -> list[str]:
    return [image.id for image in images]


@pytest.fixture
def zoo(catalog: Catalog) -> dict[str, ImageRecord]:
    """Five images that differ in every filtered attribute."""
    specs: list[dict[str, Any]] = [
        dict(
            id="00000000-0000-0000-0000-00000000000a",
            name="cirros",
            status="active",
            disk_format="raw",
            container_format="bare",
            size=100,
            owner="p1",
            visibility="public",
            tags=("edge", "small"),
            properties={"os_distro": "cirros", "hw_disk_bus": "scsi"},
        ),
        dict(
            id="00000000-0000-0000-0000-00000000000b",
            name="ubuntu",
            status="queued",
            disk_format="qcow2",
            container_format="bare",
            size=None,
            owner="p2",
            visibility="private",
            tags=("edge",),
            properties={"os_distro": "ubuntu"},
        ),
        dict(
            id="00000000-0000-0000-0000-00000000000c",
            name="fedora",
            status="active",
            disk_format="raw",
            container_format="ovf",
            size=5000,
            owner="p1",
            visibility="shared",
            protected=True,
        ),
        dict(
            id="00000000-0000-0000-0000-00000000000d",
            name="hidden",
            status="active",
            disk_format="raw",
            size=300,
            owner="p2",
            os_hidden=True,
        ),
        dict(
            id="00000000-0000-0000-0000-00000000000e",
            name=None,
            status="killed",
            size=200,
            visibility="community",
            tags=("small",),
        ),
    ]
    made = {}
    for i, spec in enumerate(specs):
        # Minutes apart, with microseconds, as real timestamps are.
        when = T0 + timedelta(minutes=i, microseconds=123456)
        image = catalog.create_image(ImageRecord(created_at=when, updated_at=when, **spec))
        made[image.id[-1]] = image
    return made


def listed(catalog: Catalog, **filters: str | list[str]) -> set[str]:
    return {image.id[-1] for image in catalog.list_images(filters=filters, limit=100)}


def test_default_list_hides_hidden_images_newest_first(
    catalog: Catalog, zoo: dict[str, ImageRecord]
) -> None:
    assert [i.id[-1] for i in catalog.list_images()] == ["e", "c", "b", "a"]
    assert listed(catalog, os_hidden="true") == {"d"}
    assert listed(catalog, os_hidden="false") == {"a", "b", "c", "e"}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"name": "cirros"}, {"a"}),
        ({"status": "active"}, {"a", "c"}),
        ({"visibility": "public"}, {"a"}),
        ({"visibility": "all"}, {"a", "b", "c", "e"}),
        ({"disk_format": "raw"}, {"a", "c"}),
        ({"container_format": "bare"}, {"a", "b"}),
        ({"owner": "p2"}, {"b"}),
        ({"id": "00000000-0000-0000-0000-00000000000c"}, {"c"}),
        ({"tag": "edge"}, {"a", "b"}),
        ({"tag": ["edge", "small"]}, {"a"}),
        ({"tag": "nope"}, set()),
        ({"size_min": "200"}, {"c", "e"}),
        ({"size_max": "200"}, {"a", "e"}),
        ({"size_min": "150", "size_max": "4000"}, {"e"}),
        ({"protected": "true"}, {"c"}),
        ({"protected": "false"}, {"a", "b", "e"}),
        ({"os_distro": "cirros"}, {"a"}),
        ({"os_distro": "cirros", "hw_disk_bus": "scsi"}, {"a"}),
        ({"os_distro": "cirros", "hw_disk_bus": "ide"}, set()),
        ({"status": "active", "owner": "p1"}, {"a", "c"}),
    ],
)
def test_filters(
    catalog: Catalog,
    zoo: dict[str, ImageRecord],
    filters: dict[str, str | list[str]],
    expected: set[str],
) -> None:
    assert listed(catalog, **filters) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Image b was created at 08:01:00.123456; shown as 2026-11-21T08:01:00Z.
        ("eq:2026-11-21T08:01:00Z", {"b"}),
        ("2026-11-21T08:01:00Z", {"b"}),
        ("neq:2026-11-21T08:01:00Z", {"a", "c", "e"}),
        ("gt:2026-11-21T08:01:00Z", {"c", "e"}),
        ("gte:2026-11-21T08:01:00Z", {"b", "c", "e"}),
        ("lt:2026-11-21T08:01:00Z", {"a"}),
        ("lte:2026-11-21T08:01:00Z", {"a", "b"}),
        ("lte:2026-11-21T08:01:00+00:00", {"a", "b"}),
        ("lt:2026-11-21T09:01:00+01:00", {"a"}),
        # Sub-second bounds compare exactly.
        ("gt:2026-11-21T08:01:00.123455Z", {"b", "c", "e"}),
        ("gt:2026-11-21T08:01:00.123456Z", {"c", "e"}),
        ("eq:2026-11-21T08:01:00.123456Z", {"b"}),
    ],
)
def test_time_filters(
    catalog: Catalog, zoo: dict[str, ImageRecord], value: str, expected: set[str]
) -> None:
    assert listed(catalog, created_at=value) == expected


def test_time_filters_combine_and_use_updated_at(
    catalog: Catalog, zoo: dict[str, ImageRecord]
) -> None:
    window = ["gte:2026-11-21T08:01:00Z", "lt:2026-11-21T08:04:00Z"]
    assert listed(catalog, created_at=window) == {"b", "c"}
    catalog.update_image(zoo["a"].id, fields={"name": "touched"})
    assert listed(catalog, updated_at="gt:2026-11-21T09:00:00Z") == {"a"}


@pytest.mark.parametrize(
    "filters",
    [
        {"size_min": "ten"},
        {"protected": "maybe"},
        {"created_at": "gt:yesterday"},
    ],
)
def test_bad_filter_values(
    catalog: Catalog, zoo: dict[str, ImageRecord], filters: dict[str, str]
) -> None:
    with pytest.raises(InvalidRequest):
        catalog.list_images(filters=filters)


def test_bad_sort_and_limit(catalog: Catalog) -> None:
    with pytest.raises(InvalidRequest, match="sort key"):
        catalog.list_images(sort=[("checksum", "asc")])
    with pytest.raises(InvalidRequest, match="sort direction"):
        catalog.list_images(sort=[("name", "up")])
    with pytest.raises(InvalidRequest):
        catalog.list_images(limit=-1)
    with pytest.raises(InvalidRequest, match=r"Marker nope could not be found\."):
        catalog.list_images(marker="nope")


@pytest.fixture
def many(catalog: Catalog) -> list[ImageRecord]:
    """Fourteen images with ties and NULLs in the sort keys, some in the same second."""
    made = []
    for i in range(14):
        when = T0 + timedelta(seconds=i // 3)  # groups of three share created_at
        made.append(
            catalog.create_image(
                ImageRecord(
                    id=f"{(i * 5) % 14:08d}-0000-0000-0000-000000000000",
                    name=None if i % 5 == 0 else f"img-{i % 4}",
                    size=None if i % 4 == 0 else (i % 3) * 100,
                    status=("active", "queued")[i % 2],
                    min_disk=i % 2,
                    protected=i % 3 == 0,
                    created_at=when,
                    updated_at=when,
                )
            )
        )
    return made


SORTS: list[list[tuple[str, str]]] = [
    [("created_at", "desc")],
    [("created_at", "asc")],
    [("name", "asc")],
    [("name", "desc")],
    [("size", "asc"), ("name", "desc")],
    [("size", "desc"), ("created_at", "asc")],
    [("status", "asc"), ("min_disk", "desc"), ("name", "asc")],
    [("protected", "desc"), ("id", "asc")],
    [("id", "desc")],
    [("visibility", "asc"), ("owner", "desc"), ("updated_at", "asc")],
]


@pytest.mark.parametrize("sort", SORTS, ids=lambda s: ",".join(f"{k}:{d}" for k, d in s))
def test_paging_with_marker_walks_the_full_sorted_list(
    catalog: Catalog, many: list[ImageRecord], sort: list[tuple[str, str]]
) -> None:
    full = catalog.list_images(sort=sort, limit=100)
    assert ids(full) == ids(sorted_like_glance(many, sort))
    pages: list[list[ImageRecord]] = []
    marker = None
    while True:
        page = catalog.list_images(sort=sort, marker=marker, limit=5)
        if not page:
            break
        pages.append(page)
        marker = page[-1].id
    assert [len(p) for p in pages] == [5, 5, 4]
    assert [i.id for p in pages for i in p] == ids(full)


def sorted_like_glance(images: list[ImageRecord], sort: list[tuple[str, str]]) -> list[ImageRecord]:
    """The expected order: NULLs first ascending (last descending), id as the tie-breaker."""
    keys = list(sort)
    if all(key != "id" for key, _ in keys):
        keys.append(("id", keys[-1][1]))
    result = list(images)
    for key, direction in reversed(keys):  # stable sorts, least significant key first
        result.sort(
            key=lambda im, k=key: (
                (getattr(im, k) is not None, getattr(im, k) or 0)
                if k in ("size", "min_disk", "protected")
                else (getattr(im, k) is not None, getattr(im, k) or "")
            ),
            reverse=direction == "desc",
        )
    return result


def test_limit_zero_and_filters_with_marker(catalog: Catalog, many: list[ImageRecord]) -> None:
    assert catalog.list_images(limit=0) == []
    active = catalog.list_images(filters={"status": "active"}, sort=[("id", "asc")], limit=100)
    first = catalog.list_images(filters={"status": "active"}, sort=[("id", "asc")], limit=3)
    rest = catalog.list_images(
        filters={"status": "active"}, sort=[("id", "asc")], marker=first[-1].id, limit=100
    )
    assert ids(first + rest) == ids(active)
