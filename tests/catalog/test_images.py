"""Images in the catalogue: records, properties, tags, locations, status transitions, delete."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ferry.catalog import Catalog, ImageRecord, Location
from ferry.errors import AlreadyExists, Conflict, Forbidden, InvalidRequest, NotFound

T0 = datetime(2026, 11, 21, 8, 1, 23, 69184, tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def test_create_and_get_round_trip(catalog: Catalog) -> None:
    image = ImageRecord(
        id=new_id(),
        name="cirros",
        status="active",
        disk_format="raw",
        container_format="bare",
        size=67108864,
        virtual_size=67108864,
        checksum="b7cf887d93e9606b4ff615f87c3c516c",
        os_hash_algo="sha512",
        os_hash_value="6e" * 64,
        owner="c0ffee00c0ffee00c0ffee00c0ffee00",
        visibility="public",
        protected=True,
        os_hidden=False,
        min_disk=1,
        min_ram=64,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=5),
        properties={"os_glance_importing_to_stores": "", "hw_disk_bus": "scsi"},
        tags=("b", "a"),
        locations=(
            Location("default_backend", "rbd://f/images/x/snap"),
            Location("dcn0", "rbd://g/images/x/snap", status="pending"),
        ),
    )
    created = catalog.create_image(image)
    assert created == catalog.get_image(image.id)
    assert created.tags == ("a", "b")
    assert created.properties == {"hw_disk_bus": "scsi", "os_glance_importing_to_stores": ""}
    assert created.created_at == T0 and created.created_at.tzinfo is not None
    assert created.locations[0].metadata == {"store": "default_backend"}
    assert [loc.store for loc in created.locations] == ["default_backend", "dcn0"]
    assert created.stores == ("default_backend",)  # pending data is not there yet
    for key in ("name", "size", "checksum", "os_hash_value", "protected", "min_ram", "owner"):
        assert getattr(created, key) == getattr(image, key)


def test_defaults_are_glances(catalog: Catalog) -> None:
    image = catalog.create_image(ImageRecord(id=new_id()))
    assert (image.status, image.visibility, image.protected, image.os_hidden) == (
        "queued",
        "shared",
        False,
        False,
    )
    assert (image.min_disk, image.min_ram, image.tags, image.locations) == (0, 0, (), ())


def test_duplicate_id_is_already_exists(catalog: Catalog) -> None:
    image = catalog.create_image(ImageRecord(id=new_id()))
    with pytest.raises(AlreadyExists, match=image.id):
        catalog.create_image(ImageRecord(id=image.id, name="other"))
    catalog.delete_image(image.id)
    with pytest.raises(AlreadyExists):  # a deleted image's id stays taken, as in Glance
        catalog.create_image(ImageRecord(id=image.id))


def test_unknown_image_is_not_found(catalog: Catalog) -> None:
    missing = new_id()
    with pytest.raises(NotFound, match=f"No image found with ID {missing}"):
        catalog.get_image(missing)
    with pytest.raises(NotFound):
        catalog.update_image(missing, fields={"name": "x"})
    with pytest.raises(NotFound):
        catalog.add_location(missing, Location("dcn0", "u"))
    with pytest.raises(NotFound):
        catalog.delete_image(missing)


@pytest.mark.parametrize(
    "bad",
    [
        {"properties": {"status": "x"}},
        {"properties": {"x": 1}},
        {"status": "bogus"},
        {"status": "deleted"},
        {"visibility": "everyone"},
        {"name": "n" * 256},
        {"size": -1},
        {"tags": ("",)},
        {"created_at": datetime(2026, 1, 1)},
        {"locations": (Location("a", "u"), Location("a", "v"))},
        {"locations": (Location("a", "u", status="weird"),)},
    ],
)
def test_invalid_records_are_refused(catalog: Catalog, bad: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        catalog.create_image(ImageRecord(id=new_id(), **bad))  # type: ignore[arg-type]


def test_update_fields_bumps_updated_at(catalog: Catalog) -> None:
    image = catalog.create_image(ImageRecord(id=new_id(), created_at=T0, updated_at=T0))
    updated = catalog.update_image(
        image.id,
        fields={"name": "renamed", "size": 10, "checksum": "0" * 32, "protected": True},
    )
    assert (updated.name, updated.size, updated.checksum, updated.protected) == (
        "renamed",
        10,
        "0" * 32,
        True,
    )
    assert updated.updated_at > T0 and updated.created_at == T0
    with pytest.raises(InvalidRequest):
        catalog.update_image(image.id, fields={"id": "other"})
    with pytest.raises(InvalidRequest):
        catalog.update_image(image.id, fields={"created_at": T0})
    with pytest.raises(InvalidRequest):
        catalog.update_image(image.id, fields={"min_ram": "64"})


def test_properties_set_and_remove(catalog: Catalog) -> None:
    image = catalog.create_image(ImageRecord(id=new_id(), properties={"a": "1", "b": "2"}))
    image = catalog.update_image(image.id, set_properties={"b": "20", "c": "3"})
    assert image.properties == {"a": "1", "b": "20", "c": "3"}
    image = catalog.update_image(image.id, remove_properties=["a", "never-set"])
    assert image.properties == {"b": "20", "c": "3"}
    # Removes come first, so a property both removed and set ends up set.
    image = catalog.update_image(image.id, remove_properties=["b"], set_properties={"b": "200"})
    assert image.properties == {"b": "200", "c": "3"}
    with pytest.raises(InvalidRequest, match="reserved"):
        catalog.update_image(image.id, set_properties={"locations": "x"})
    assert catalog.get_image(image.id).properties == {"b": "200", "c": "3"}


def test_tags_replace_add_remove(catalog: Catalog) -> None:
    image = catalog.create_image(ImageRecord(id=new_id(), tags=("x", "y")))
    assert catalog.update_image(image.id, tags=["z", "a", "z"]).tags == ("a", "z")
    assert catalog.update_image(image.id, add_tags=["b", "a"]).tags == ("a", "b", "z")
    assert catalog.update_image(image.id, remove_tags=["z", "nope"]).tags == ("a", "b")
    assert catalog.update_image(image.id, tags=[]).tags == ()


def test_expect_status_guards_transitions(catalog: Catalog) -> None:
    image = catalog.create_image(ImageRecord(id=new_id()))
    saving = catalog.update_image(
        image.id, expect_status={"queued"}, fields={"status": "saving"}, set_properties={"p": "1"}
    )
    assert saving.status == "saving"
    with pytest.raises(Conflict, match="saving"):
        catalog.update_image(
            image.id,
            expect_status={"queued"},
            fields={"status": "saving"},
            set_properties={"q": "2"},
        )
    # Nothing of the refused update landed.
    assert catalog.get_image(image.id).properties == {"p": "1"}
    active = catalog.update_image(
        image.id, expect_status=("saving", "uploading"), fields={"status": "active"}
    )
    assert active.status == "active"


def race(catalog: Catalog, image_id: str, contenders: int) -> list[str]:
    """Let threads try queued -> saving at the same moment; return each one's outcome."""
    barrier = threading.Barrier(contenders)
    outcomes: list[str] = []

    def contend(me: int) -> None:
        barrier.wait()
        try:
            catalog.update_image(
                image_id,
                expect_status={"queued"},
                fields={"status": "saving"},
                set_properties={"winner": str(me)},
            )
            outcomes.append(f"won:{me}")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


@pytest.mark.parametrize("contenders", [2, 4])
def test_concurrent_transitions_let_exactly_one_win(catalog: Catalog, contenders: int) -> None:
    for _ in range(10):
        image = catalog.create_image(ImageRecord(id=new_id()))
        outcomes = race(catalog, image.id, contenders)
        winners = [o for o in outcomes if o.startswith("won:")]
        assert len(winners) == 1 and outcomes.count("conflict") == contenders - 1
        assert catalog.get_image(image.id).properties["winner"] == winners[0][4:]


def test_locations_keep_their_order_and_are_replaced_in_place(catalog: Catalog) -> None:
    image = catalog.create_image(ImageRecord(id=new_id()))
    for store in ("default_backend", "dcn1", "dcn0"):
        image = catalog.add_location(image.id, Location(store, f"rbd://{store}/x", "pending"))
    assert [loc.store for loc in image.locations] == ["default_backend", "dcn1", "dcn0"]
    image = catalog.add_location(image.id, Location("dcn1", "rbd://dcn1/x2"))
    assert [(loc.store, loc.url, loc.status) for loc in image.locations] == [
        ("default_backend", "rbd://default_backend/x", "pending"),
        ("dcn1", "rbd://dcn1/x2", "active"),
        ("dcn0", "rbd://dcn0/x", "pending"),
    ]
    image = catalog.remove_location(image.id, "default_backend")
    image = catalog.add_location(image.id, Location("default_backend", "rbd://d/y"))
    assert [loc.store for loc in image.locations] == ["dcn1", "dcn0", "default_backend"]
    assert image.stores == ("dcn1", "default_backend")
    with pytest.raises(NotFound, match="is not stored in store nowhere"):
        catalog.remove_location(image.id, "nowhere")


def test_an_http_store_holds_several_urls_of_an_image(catalog: Catalog) -> None:
    image = catalog.create_image(ImageRecord(id=new_id()))
    catalog.add_location(image.id, Location("default_backend", "rbd://d/x"))
    for url in ("http://a/x", "http://a/x#new"):
        image = catalog.add_location(image.id, Location("web", url), one_per_store=False)
    relabelled = Location("web", "http://a/x", metadata={"date": "2015-10-15"})
    image = catalog.add_location(image.id, relabelled, one_per_store=False)  # in place
    assert [(loc.store, loc.url) for loc in image.locations] == [
        ("default_backend", "rbd://d/x"),
        ("web", "http://a/x"),
        ("web", "http://a/x#new"),
    ]
    assert image.locations[1] == relabelled and image.stores == ("default_backend", "web")
    # A block store keeps one: another URL there replaces it, in its place.
    image = catalog.add_location(image.id, Location("default_backend", "rbd://d/y"))
    assert [loc.url for loc in image.locations][:2] == ["rbd://d/y", "http://a/x"]
    image = catalog.remove_location(image.id, "web", url="http://a/x")
    assert [loc.url for loc in image.locations] == ["rbd://d/y", "http://a/x#new"]
    with pytest.raises(NotFound):
        catalog.remove_location(image.id, "web", url="http://a/x")
    catalog.add_location(image.id, Location("web", "http://a/z"), one_per_store=False)
    image = catalog.remove_location(image.id, "web")  # every URL of the store
    assert [loc.url for loc in image.locations] == ["rbd://d/y"]
    catalog.add_location(image.id, Location("web", "http://a/z"), one_per_store=False)
    catalog.add_location(image.id, Location("web", "http://a/w"), one_per_store=False)
    catalog.delete_image(image.id)
    assert sorted(catalog.owners.deleted_locations(image.id)) == ["default_backend", "web"]


def test_add_location_with_transition_is_atomic(catalog: Catalog) -> None:
    image = catalog.create_image(ImageRecord(id=new_id(), status="saving"))
    done = catalog.add_location(
        image.id,
        Location("default_backend", "rbd://f/images/i/snap"),
        expect_status={"saving"},
        fields={"status": "active", "size": 4, "checksum": "c" * 32},
    )
    assert (done.status, done.size, len(done.locations)) == ("active", 4, 1)
    with pytest.raises(Conflict):
        catalog.add_location(
            image.id, Location("dcn0", "rbd://g/x"), expect_status={"saving"}, fields={}
        )
    assert [loc.store for loc in catalog.get_image(image.id).locations] == ["default_backend"]


def test_location_metadata_is_kept(catalog: Catalog) -> None:
    image = catalog.create_image(ImageRecord(id=new_id()))
    loc = Location("dcn0", "rbd://x", metadata={"store": "dcn0", "fsid": "abc"})
    assert catalog.add_location(image.id, loc).locations == (loc,)


def test_soft_delete_hides_the_image_and_returns_its_locations(catalog: Catalog) -> None:
    image = catalog.create_image(
        ImageRecord(
            id=new_id(),
            status="active",
            locations=(Location("default_backend", "u1"), Location("dcn0", "u2")),
        )
    )
    other = catalog.create_image(ImageRecord(id=new_id()))
    deleted = catalog.delete_image(image.id)
    assert deleted.status == "active"
    assert [loc.store for loc in deleted.locations] == ["default_backend", "dcn0"]
    with pytest.raises(NotFound):
        catalog.get_image(image.id)
    assert [i.id for i in catalog.list_images()] == [other.id]
    assert catalog.list_images(filters={"status": "deleted"}) == []
    with pytest.raises(NotFound):
        catalog.delete_image(image.id)
    with pytest.raises(NotFound):
        catalog.update_image(image.id, expect_status={"active"}, fields={"name": "x"})
    with pytest.raises(InvalidRequest, match="could not be found"):
        catalog.list_images(marker=image.id)


def test_protected_image_is_not_deleted(catalog: Catalog) -> None:
    image = catalog.create_image(ImageRecord(id=new_id(), protected=True))
    with pytest.raises(Forbidden, match="protected"):
        catalog.delete_image(image.id)
    assert catalog.get_image(image.id).updated_at == image.updated_at
    catalog.update_image(image.id, fields={"protected": False})
    catalog.delete_image(image.id)
