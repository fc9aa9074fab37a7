"""Image visibility, ownership and members below the API, with Glance's default policy (and an
operator's override): what each kind of caller may see and do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.catalog import Catalog, ImageRecord
from ferry.errors import Conflict, Forbidden, InvalidRequest, NotFound, TooLarge
from ferry.identity.context import Context
from ferry.identity.policy import Policy
from ferry.images.access import ImageAccess
from ferry.images.members import ImageMembers
from ferry.images.service import ImageService, ListQuery


def person(project: str, *roles: str) -> Context:
    implied = {"admin": {"admin", "member", "reader"}, "member": {"member", "reader"}}
    return Context(
        user_id=f"{project}-user",
        project_id=project,
        roles=frozenset().union(*(implied.get(r, {r}) for r in roles)),
    )


A, A_READER = person("pa", "member"), person("pa", "reader")
B, C, D = person("pb", "member"), person("pc", "member"), person("pd", "member")
ADMIN = person("padmin", "admin")


class World:
    def __init__(self, catalog: Catalog, policy: Policy) -> None:
        self.catalog = catalog
        # Records, listing and patches need no store.
        self.images = ImageService(catalog, None, "p0")  # type: ignore[arg-type]
        self.access = ImageAccess(catalog, policy)
        self.members = ImageMembers(self.access)

    def new(self, ctx: Context, **body: object) -> ImageRecord:
        self.access.check_create(ctx, body)
        return self.images.create(body, ctx=ctx)

    def listed(self, ctx: Context, **filters: str) -> set[str | None]:
        status = str(filters.pop("member_status", "accepted"))
        query = ListQuery(filters=filters, member_status=status, limit=100)
        return {r.name for r in self.images.list(query, ctx)}

    def patch(self, ctx: Context, record: ImageRecord, *ops: dict[str, object]) -> ImageRecord:
        self.access.fetch(ctx, record.id)
        return self.images.update(record.id, ops, guard=self.access.patch_guard(ctx, record))


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with Catalog(f"sqlite:///{tmp_path / 'catalog.db'}") as cat:
        cat.migrate()
        yield cat


@pytest.fixture
def world(catalog: Catalog) -> World:
    return World(catalog, Policy())


def test_new_images_belong_to_the_callers_project_and_stay_in_it(world: World) -> None:
    image = world.new(A, name="a-private", visibility="private")
    assert image.owner == "pa" and world.new(A, name="a-shared").visibility == "shared"
    assert world.access.fetch(A_READER, image.id) == image
    with pytest.raises(NotFound, match=f"No image found with ID {image.id}"):
        world.access.fetch(B, image.id)
    with pytest.raises(NotFound):  # not even a hint that it exists, whatever the action
        world.access.fetch(B, image.id, "delete_image")
    assert world.listed(B) == set() and world.listed(A) == {"a-private", "a-shared"}
    assert world.access.fetch(ADMIN, image.id, "delete_image") == image
    assert world.listed(ADMIN) == {"a-private", "a-shared"}


def test_a_reader_may_look_but_not_touch(world: World) -> None:
    image = world.new(A, name="a")
    with pytest.raises(Forbidden, match="not authorized to complete add_image action"):
        world.new(A_READER, name="r")
    for action in ("modify_image", "delete_image", "upload_image", "download_image"):
        with pytest.raises(Forbidden, match=f"not authorized to complete {action} action"):
            world.access.fetch(A_READER, image.id, action)
    with pytest.raises(Forbidden, match="modify_image"):
        world.patch(A_READER, image, {"op": "replace", "path": "/name", "value": "x"})


def test_owner_and_visibility_rules_on_create_and_patch(world: World) -> None:
    with pytest.raises(Forbidden, match="You are not permitted to create images owned by 'pb'"):
        world.new(A, name="x", owner="pb")
    for visibility, rule in (("public", "publicize_image"), ("community", None)):
        if rule:
            with pytest.raises(Forbidden, match=f"not authorized to complete {rule} action"):
                world.new(A, name="x", visibility=visibility)
        else:  # communitize_image: the owner project's members may
            assert world.new(A, name="c", visibility=visibility).visibility == "community"
    image = world.new(A, name="a")
    with pytest.raises(Forbidden, match="publicize_image"):
        world.patch(A, image, {"op": "replace", "path": "/visibility", "value": "public"})
    for kind in ("replace", "add"):
        with pytest.raises(Forbidden, match="Owner can't be updated by non admin"):
            world.patch(A, image, {"op": kind, "path": "/owner", "value": "pb"})
    assert world.new(ADMIN, name="p", visibility="public", owner="pa").owner == "pa"
    public = world.patch(ADMIN, image, {"op": "replace", "path": "/visibility", "value": "public"})
    assert public.visibility == "public" and "a" in world.listed(B)
    assert (
        world.patch(ADMIN, image, {"op": "replace", "path": "/owner", "value": "pb"}).owner == "pb"
    )


def test_public_and_community_images_are_seen_but_only_the_owner_changes_them(
    world: World,
) -> None:
    public = world.new(ADMIN, name="pub", visibility="public", owner="pa")
    community = world.new(A, name="comm", visibility="community")
    assert world.listed(B) == {"pub"}
    assert world.listed(B, visibility="community") == {"comm"}
    assert world.access.fetch(B, community.id).id == community.id
    assert world.access.fetch(B, public.id, "download_image").id == public.id
    with pytest.raises(Forbidden, match="modify_image"):
        world.patch(B, public, {"op": "replace", "path": "/name", "value": "mine"})
    with pytest.raises(Forbidden, match="delete_image"):
        world.access.fetch(B, community.id, "delete_image")
    with pytest.raises(InvalidRequest, match="Invalid visibility value: everything"):
        world.listed(B, visibility="everything")


def test_a_member_sees_a_shared_image_before_accepting_and_lists_it_after(world: World) -> None:
    image = world.new(A, name="shared")
    with pytest.raises(NotFound):
        world.access.fetch(B, image.id)
    pending = world.members.add(A, image.id, "pb", 128)
    assert pending.status == "pending"
    assert world.access.fetch(B, image.id).id == image.id  # any answer: it may look
    assert world.listed(B) == set()
    assert world.listed(B, member_status="pending") == {"shared"}
    assert world.listed(B, visibility="shared", member_status="all") == {"shared"}
    with pytest.raises(InvalidRequest, match="Invalid status: maybe"):
        world.listed(B, member_status="maybe")
    assert world.members.answer(B, image.id, "pb", "accepted").status == "accepted"
    assert world.listed(B) == {"shared"}
    world.members.answer(B, image.id, "pb", "rejected")
    assert world.listed(B) == set() and world.listed(B, member_status="rejected") == {"shared"}
    with pytest.raises(Forbidden, match="modify_image"):  # it sees the image, may not change it
        world.patch(B, image, {"op": "replace", "path": "/name", "value": "mine"})
    with pytest.raises(NotFound):
        world.access.fetch(C, image.id)
    world.members.remove(A, image.id, "pb")
    with pytest.raises(NotFound):
        world.access.fetch(B, image.id)


def test_only_the_member_answers_and_only_the_owner_shares(world: World) -> None:
    image = world.new(A, name="shared")
    world.members.add(A, image.id, "pb", 128)
    world.members.add(A, image.id, "pc", 128)
    with pytest.raises(Forbidden, match="modify_member"):
        world.members.answer(A, image.id, "pb", "accepted")
    with pytest.raises(NotFound, match="pc not found in the member list"):
        world.members.answer(B, image.id, "pc", "accepted")  # another member's row: unseen
    with pytest.raises(InvalidRequest, match='Status must be "pending", "accepted" or "rejected"'):
        world.members.answer(B, image.id, "pb", "maybe")
    with pytest.raises(Forbidden, match="add_member"):
        world.members.add(B, image.id, "pd", 128)
    with pytest.raises(Forbidden, match="delete_member"):
        world.members.remove(B, image.id, "pb")
    with pytest.raises(Forbidden, match="add_member"):
        world.members.add(A_READER, image.id, "pd", 128)
    assert [m.member_id for m in world.members.list(A, image.id)] == ["pb", "pc"]
    assert [m.member_id for m in world.members.list(B, image.id)] == ["pb"]
    assert world.members.get(B, image.id, "pb").status == "pending"
    with pytest.raises(NotFound):
        world.members.get(B, image.id, "pc")
    with pytest.raises(NotFound, match=f"Image {image.id} not found"):
        world.members.list(D, image.id)
    with pytest.raises(Conflict, match=f"Member pb is duplicated for image {image.id}"):
        world.members.add(A, image.id, "pb", 128)
    with pytest.raises(TooLarge, match=r"Image member limit exceeded .* Attempted: 3, Maximum: 2"):
        world.members.add(A, image.id, "pd", 2)
    assert world.members.answer(ADMIN, image.id, "pc", "accepted").status == "accepted"


def test_only_shared_images_have_members(world: World) -> None:
    image = world.new(A, name="private", visibility="private")
    with pytest.raises(Forbidden, match=f"Not allowed to create members for image {image.id}"):
        world.members.add(A, image.id, "pb", 128)
    with pytest.raises(Forbidden, match="Only shared images have members"):
        world.members.list(A, image.id)
    with pytest.raises(NotFound, match="Only shared images have members"):
        world.members.get(A, image.id, "pb")
    shared = world.new(A, name="shared")
    world.members.add(A, shared.id, "pb", 128)
    world.patch(A, shared, {"op": "replace", "path": "/visibility", "value": "private"})
    with pytest.raises(NotFound):  # a member of an image no longer shared sees nothing
        world.access.fetch(B, shared.id)


def test_a_policy_file_overrides_a_default(catalog: Catalog, tmp_path: Path) -> None:
    rules = tmp_path / "policy.yaml"
    rules.write_text('"publicize_image": "role:member and project_id:%(project_id)s"\n')
    world = World(catalog, Policy(rules))
    assert world.new(A, name="pub", visibility="public").visibility == "public"
    mine = world.new(B, name="mine")
    patched = world.patch(B, mine, {"op": "replace", "path": "/visibility", "value": "public"})
    assert patched.visibility == "public"
