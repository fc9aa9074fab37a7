"""Who may see an image and do what to it: Glance's visibility rule and its policy targets.

An image the caller may not see is NotFound, never Forbidden (Glance hides that it exists):
admins see every image; others see their project's images, public and community ones, images
nobody owns, and shared images their project is a member of (whatever its answer). An image
the caller sees but may not act on is Forbidden, unless the policy's ``get_image`` says no
too, which is NotFound again (Glance's ``ImageAPIPolicy``). Every image route fetches its image
through ``ImageAccess.fetch`` with the actions it needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferry.catalog import Catalog, ImageRecord
from ferry.catalog.listing import Viewer
from ferry.errors import Forbidden, NotFound
from ferry.identity.context import Context
from ferry.identity.policy import Policy
from ferry.images.service import PatchGuard

# Visibilities a new or patched image may only take with this rule's permission.
VISIBILITY_RULES = {"public": "publicize_image", "community": "communitize_image"}


def target(ctx: Context, record: ImageRecord) -> dict[str, Any]:
    """The policy target of an image, as Glance's ``ImageTarget`` builds it.

    ``member_id`` is the caller's project when the image is shared and not its own: a
    non-admin who sees such an image is one of its members, so this is Glance's own rule.
    """
    shared_with_caller = record.visibility == "shared" and record.owner != ctx.project_id
    return {
        "project_id": record.owner,
        "owner": record.owner,
        "visibility": record.visibility,
        "member_id": ctx.project_id if shared_with_caller else None,
    }


class ImageAccess:
    """Visibility and policy for one site's images."""

    def __init__(self, catalog: Catalog, policy: Policy) -> None:
        self.catalog = catalog
        self.policy = policy

    def fetch(
        self, ctx: Context, image_id: str, *actions: str, missing: str | None = None
    ) -> ImageRecord:
        """The image, if the caller may see it and do every one of ``actions`` to it.

        NotFound (with ``missing`` as its message, if given) when it does not exist or is not
        the caller's to see; Forbidden when an action is not allowed on an image it sees.
        """
        try:  # Glance's is_image_visible, in the query (catalog.listing.visible_to)
            record = self.catalog.get_image(image_id, Viewer(ctx.project_id, ctx.can_see_all()))
        except NotFound as exc:
            raise NotFound(missing or str(exc)) from exc
        for action in actions or ("get_image",):
            self.check(ctx, record, action, missing=missing)
        return record

    def allows(self, ctx: Context, record: ImageRecord, action: str) -> bool:
        """Whether the policy lets the caller do ``action`` to this (visible) image."""
        return self.policy.check(ctx, action, target(ctx, record))

    def check(
        self, ctx: Context, record: ImageRecord, action: str, *, missing: str | None = None
    ) -> None:
        """Forbidden unless the policy allows ``action``; NotFound if it hides the image too."""
        if self.allows(ctx, record, action):
            return
        if action == "get_image" or not self.allows(ctx, record, "get_image"):
            raise NotFound(missing or f"No image found with ID {record.id}")
        raise Forbidden(f"You are not authorized to complete {action} action.")

    def check_create(self, ctx: Context, body: Mapping[str, Any]) -> None:
        """``add_image`` for a new image (owned by the caller's project unless it says), and
        the visibility rule for a public or community one."""
        owner = body.get("owner", ctx.project_id)
        new = {"project_id": owner, "owner": owner, "visibility": body.get("visibility", "private")}
        if not self.policy.check(ctx, "add_image", new):
            if owner != ctx.project_id:
                raise Forbidden(f"You are not permitted to create images owned by '{owner}'")
            raise Forbidden("You are not authorized to complete add_image action.")
        rule = VISIBILITY_RULES.get(str(new["visibility"]))
        if rule is not None:
            self.policy.enforce(ctx, rule, new)

    def patch_guard(self, ctx: Context, record: ImageRecord) -> PatchGuard:
        """What each JSON-patch operation on ``record`` needs, checked before it is applied:
        Glance's ``update_property`` (visibility rules, then modify_image), its location rules,
        and no owner change by a non-admin."""

        def guard(kind: str, name: str, value: Any) -> None:
            if name == "owner" and kind != "remove" and not ctx.is_admin:
                # Glance refuses "replace"; its "add" slips through to modify_image and hands
                # the image to another project. ferry refuses both.
                raise Forbidden("Owner can't be updated by non admin.")
            if name == "locations":
                rule = "delete_image_location" if kind == "remove" else "set_image_location"
                self.check(ctx, record, rule)
                return
            if name == "visibility" and isinstance(value, str) and value in VISIBILITY_RULES:
                self.policy.enforce(ctx, VISIBILITY_RULES[value], target(ctx, record))
            self.check(ctx, record, "modify_image")

        return guard
