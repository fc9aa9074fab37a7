"""Image members, as Glance's members API v2 has them.

Only a ``shared`` image has members. Its owner's project adds and removes them; a member
project answers (pending, accepted, rejected) and only it changes its answer. The owner (and an
admin) sees every member; a member sees its own row only. Checks run in Glance's order, with
its words: the image (404), shared or not (403, or 404 for a single member), the policy rule,
then the member row (404).
"""

from __future__ import annotations

from typing import Any

from ferry.catalog import ImageRecord
from ferry.catalog.members import MEMBER_STATUSES, MemberRecord, MemberStatus
from ferry.errors import AlreadyExists, Conflict, Forbidden, InvalidRequest, NotFound, TooLarge
from ferry.identity.context import Context
from ferry.images.access import ImageAccess


class ImageMembers:
    """Every member operation of one site's images."""

    def __init__(self, access: ImageAccess) -> None:
        self.access = access
        self.members = access.catalog.members

    def list(self, ctx: Context, image_id: str) -> list[MemberRecord]:
        """The members the caller may see: all of them for the owner and admins, else its own."""
        record = self._image(ctx, image_id)
        if record.visibility != "shared":
            raise Forbidden(
                f"Not allowed to list members for image {image_id}: Only shared images have "
                "members."
            )
        self.access.check(ctx, record, "get_members")
        return self.members.list(image_id, member_id=self._only(ctx, record))

    def get(self, ctx: Context, image_id: str, member_id: str) -> MemberRecord:
        """One member; anything the caller may not see is NotFound, as Glance hides it."""
        record = self._image(ctx, image_id)
        if record.visibility != "shared":
            raise NotFound("Only shared images have members.")
        try:
            self.access.check(ctx, record, "get_member")
        except Forbidden as exc:
            raise NotFound(str(exc)) from exc
        return self._member(ctx, record, member_id)

    def add(self, ctx: Context, image_id: str, member_id: str, most: int) -> MemberRecord:
        """Share the image with project ``member_id`` (pending until it answers)."""
        record = self._shared(ctx, image_id, "create")
        self.access.check(ctx, record, "add_member")
        try:
            return self.members.add(image_id, member_id, most=most)
        except TooLarge as exc:
            raise TooLarge(f"Image member limit exceeded for image {image_id}: {exc}:") from exc
        except AlreadyExists as exc:
            raise Conflict(f"Member {member_id} is duplicated for image {image_id}") from exc

    def answer(self, ctx: Context, image_id: str, member_id: str, status: Any) -> MemberRecord:
        """The member's answer: pending, accepted or rejected."""
        record = self._shared(ctx, image_id, "update")
        self.access.check(ctx, record, "get_member")
        self._member(ctx, record, member_id)
        self.access.check(ctx, record, "modify_member")
        if status not in MEMBER_STATUSES:
            raise InvalidRequest(
                'Incorrect request: Status must be "pending", "accepted" or "rejected".'
            )
        checked: MemberStatus = status
        return self.members.set_status(image_id, member_id, checked)

    def remove(self, ctx: Context, image_id: str, member_id: str) -> None:
        """Stop sharing the image with project ``member_id``."""
        record = self._shared(ctx, image_id, "delete")
        self.access.check(ctx, record, "get_member")
        self._member(ctx, record, member_id)
        self.access.check(ctx, record, "delete_member")
        self.members.remove(image_id, member_id)

    def _image(self, ctx: Context, image_id: str) -> ImageRecord:
        return self.access.fetch(ctx, image_id, missing=f"Image {image_id} not found.")

    def _shared(self, ctx: Context, image_id: str, verb: str) -> ImageRecord:
        record = self._image(ctx, image_id)
        if record.visibility != "shared":
            raise Forbidden(f"Not allowed to {verb} members for image {image_id}.")
        return record

    def _only(self, ctx: Context, record: ImageRecord) -> str | None:
        """Whose rows the caller sees (Glance's member query): None for all of them."""
        if ctx.can_see_all() or record.owner == ctx.project_id:
            return None
        return ctx.project_id or ""

    def _member(self, ctx: Context, record: ImageRecord, member_id: str) -> MemberRecord:
        mine = self._only(ctx, record)
        if mine is not None and mine != member_id:
            raise NotFound(f"{member_id} not found in the member list of the image {record.id}.")
        return self.members.get(record.id, member_id)
