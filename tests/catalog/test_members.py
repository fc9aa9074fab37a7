"""Image members in the catalogue, and listing scoped to a viewer as Glance scopes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ferry.catalog import Catalog, ImageRecord
from ferry.catalog.listing import Viewer
from ferry.errors import AlreadyExists, InvalidRequest, NotFound, TooLarge

T0 = datetime(2026, 11, 28, 8, 0, 0, tzinfo=UTC)


def image(catalog: Catalog, name: str, owner: str | None, visibility: str) -> ImageRecord:
    when = T0 + timedelta(minutes=len(catalog.list_images(limit=1000)))
    return catalog.create_image(
        ImageRecord(
            id=f"00000000-0000-0000-0000-{name:0>12}",
            name=name,
            owner=owner,
            visibility=visibility,
            created_at=when,
            updated_at=when,
        )
    )


def test_members_are_added_answered_listed_and_removed(catalog: Catalog) -> None:
    img = image(catalog, "a", "pa", "shared")
    added = catalog.members.add(img.id, "pb", most=128)
    assert (added.member_id, added.status) == ("pb", "pending")
    catalog.members.add(img.id, "pc", most=128)
    assert catalog.members.get(img.id, "pb") == added
    assert [m.member_id for m in catalog.members.list(img.id)] == ["pb", "pc"]
    assert [m.member_id for m in catalog.members.list(img.id, member_id="pc")] == ["pc"]
    accepted = catalog.members.set_status(img.id, "pb", "accepted")
    assert accepted.status == "accepted" and accepted.updated_at >= added.updated_at
    catalog.members.remove(img.id, "pb")
    assert [m.member_id for m in catalog.members.list(img.id)] == ["pc"]
    for missing in (
        lambda: catalog.members.get(img.id, "pb"),
        lambda: catalog.members.set_status(img.id, "pb", "rejected"),
        lambda: catalog.members.remove(img.id, "pb"),
    ):
        with pytest.raises(NotFound, match="pb not found in the member list"):
            missing()


def test_a_duplicate_member_conflicts_and_the_quota_counts_first(catalog: Catalog) -> None:
    img = image(catalog, "a", "pa", "shared")
    catalog.members.add(img.id, "pb", most=2)
    with pytest.raises(AlreadyExists, match="already associated"):
        catalog.members.add(img.id, "pb", most=2)
    catalog.members.add(img.id, "pc", most=2)
    with pytest.raises(TooLarge, match="Attempted: 3, Maximum: 2"):
        catalog.members.add(img.id, "pd", most=2)
    catalog.members.add(img.id, "pd", most=-1)  # negative: no limit, as Glance
    assert len(catalog.members.list(img.id)) == 3


def test_members_go_with_their_image(catalog: Catalog) -> None:
    img = image(catalog, "a", "pa", "shared")
    catalog.members.add(img.id, "pb", most=128)
    catalog.delete_image(img.id)
    assert catalog.members.list(img.id) == []
    with pytest.raises(NotFound):
        catalog.members.add(img.id, "pc", most=128)


@pytest.fixture
def world(catalog: Catalog) -> Catalog:
    """Images of projects pa and pb in every visibility; pb is a member of two of pa's."""
    for name, owner, visibility in [
        ("apriv", "pa", "private"),
        ("ashared", "pa", "shared"),
        ("apending", "pa", "shared"),
        ("arejected", "pa", "shared"),
        ("aprivmember", "pa", "private"),  # a member of a non-shared image sees nothing
        ("apub", "pa", "public"),
        ("acomm", "pa", "community"),
        ("bpriv", "pb", "private"),
        ("bcomm", "pb", "community"),
        ("nobody", None, "private"),
    ]:
        image(catalog, name, owner, visibility)
    members = catalog.members
    members.add(_id("ashared"), "pb", most=128)
    members.set_status(_id("ashared"), "pb", "accepted")
    members.add(_id("apending"), "pb", most=128)
    members.add(_id("arejected"), "pb", most=128)
    members.set_status(_id("arejected"), "pb", "rejected")
    members.add(_id("aprivmember"), "pb", most=128)
    members.set_status(_id("aprivmember"), "pb", "accepted")
    return catalog


def _id(name: str) -> str:
    return f"00000000-0000-0000-0000-{name:0>12}"


def names(catalog: Catalog, viewer: Viewer, **filters: str) -> set[str]:
    found = catalog.list_images(filters=filters, viewer=viewer, limit=100)
    return {i.name or "" for i in found}


PB = Viewer("pb")
PB_ALL = Viewer("pb", member_status="all")
SHARED_WITH_PB = {"ashared", "apending", "arejected"}
# Glance's admin listing: every project's images, others' community ones only on asking
ADMIN_SEES = {"apriv", "aprivmember", "apub", "acomm", "bpriv", "nobody"} | SHARED_WITH_PB


@pytest.mark.parametrize(
    ("viewer", "filters", "expected"),
    [
        (PB, {}, {"ashared", "apub", "bpriv", "bcomm"}),
        (Viewer("pb", member_status="pending"), {}, {"apending", "apub", "bpriv", "bcomm"}),
        (Viewer("pb", member_status="rejected"), {}, {"arejected", "apub", "bpriv", "bcomm"}),
        (PB_ALL, {}, SHARED_WITH_PB | {"apub", "bpriv", "bcomm"}),
        (PB, {"visibility": "shared"}, {"ashared"}),
        (PB_ALL, {"visibility": "shared"}, SHARED_WITH_PB),
        (PB, {"visibility": "community"}, {"acomm", "bcomm"}),
        (PB, {"visibility": "private"}, {"bpriv"}),
        (PB, {"visibility": "public"}, {"apub"}),
        (PB, {"visibility": "all"}, {"ashared", "apub", "acomm", "bpriv", "bcomm"}),
        (Viewer("pa"), {"visibility": "shared"}, SHARED_WITH_PB),
        (Viewer(None), {}, {"apub"}),
        (Viewer("pa", sees_all=True), {}, ADMIN_SEES),
        (Viewer("pa", sees_all=True), {"visibility": "community"}, {"acomm", "bcomm"}),
    ],
)
def test_listing_shows_what_glance_lists(
    world: Catalog, viewer: Viewer, filters: dict[str, str], expected: set[str]
) -> None:
    assert names(world, viewer, **filters) == expected


def test_pages_of_a_scoped_listing_and_a_marker_the_viewer_cannot_see(world: Catalog) -> None:
    everything = world.list_images(viewer=PB_ALL, limit=100)
    pages, marker = [], None
    while page := world.list_images(viewer=PB_ALL, marker=marker, limit=2):
        pages += page
        marker = page[-1].id
    assert pages == everything
    # pending membership: the image is visible (a marker), though not listed by default
    assert world.list_images(viewer=PB, marker=_id("apending"), limit=100)
    with pytest.raises(InvalidRequest, match="could not be found"):
        world.list_images(viewer=PB, marker=_id("apriv"))
    assert world.list_images(viewer=PB, marker=_id("nobody")) is not None  # nobody's: visible
