"""Backups to central's backups pool (full, then only the changed extents) and the
cross_az_attach rules of boot-from-volume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ferry.block import ImageSpec
from ferry.errors import Conflict, Forbidden, InvalidRequest
from tests.volumes.conftest import Guide, MiB, build, close, random_image

OBJECT = 4 * MiB


def test_incremental_backup_moves_only_changed_extents_and_restores(guide: Guide) -> None:
    central, dcn0 = guide.sites["central"], guide.sites["dcn0"]
    image = dcn0.upload(random_image())  # 8 MiB of data, a 4 MiB hole
    volume = dcn0.volumes.create_volume(image_id=image.id, size=1)
    spec = f"volumes/volume-{volume.id}"

    full = central.volumes.create_backup(volume.id, name="full")
    assert (full.status, full.is_incremental, full.availability_zone) == (
        "available", False, "central"
    )  # fmt: skip
    assert full.moved == 8 * MiB  # the clone's data (its parent's), never its zeros
    assert f"volume-{volume.id}.backup.{full.id}" in guide.cluster("central").list_images("backups")
    first_state = guide.digest("dcn0", spec)

    # The guest changes two objects' worth: one inside the data, one far out in the volume.
    with guide.cluster("dcn0") as c, c.open(ImageSpec.parse(spec)) as v:
        v.write(0, os.urandom(OBJECT))
        v.write(512 * MiB, os.urandom(OBJECT))
    second_state = guide.digest("dcn0", spec)
    incr = central.volumes.create_backup(volume.id, name="incr")
    assert incr.is_incremental and incr.base == full.base
    assert incr.moved == 2 * OBJECT  # only the changed extents
    # The volume keeps one backup snapshot, the newest (the next incremental's base).
    with guide.cluster("dcn0") as c, c.open(ImageSpec.parse(spec)) as v:
        assert [s.name for s in v.list_snaps()] == [f"backup.{incr.id}"]

    # A region zeroed after the last backup is zeroed in the next one too.
    with guide.cluster("dcn0") as c, c.open(ImageSpec.parse(spec)) as v:
        v.write(512 * MiB, bytes(OBJECT))
    third_state = guide.digest("dcn0", spec)
    zeroed = central.volumes.create_backup(volume.id)
    assert zeroed.is_incremental and zeroed.moved <= OBJECT

    # Each backup restores on its own, byte-identical, as a new volume in the volume's zone.
    for backup, state in ((full, first_state), (incr, second_state), (zeroed, third_state)):
        restored = central.volumes.restore_backup(backup.id)
        assert (restored.status, restored.availability_zone) == ("available", "dcn0")
        assert restored.bootable and restored.volume_image_metadata == volume.volume_image_metadata
        assert guide.digest("dcn0", f"volumes/volume-{restored.id}") == state
    assert [b.id for b in central.volumes.backups.list(volume_id=volume.id)] == [
        zeroed.id, incr.id, full.id
    ]  # fmt: skip

    # Deleting the middle backup leaves the others restorable; the last one takes the base.
    central.volumes.delete_backup(incr.id)
    again = central.volumes.restore_backup(full.id)
    assert guide.digest("dcn0", f"volumes/volume-{again.id}") == first_state
    central.volumes.delete_backup(full.id)
    central.volumes.delete_backup(zeroed.id)
    assert full.base not in guide.cluster("central").list_images("backups")
    # With no backup left, the next one is full again.
    assert not central.volumes.create_backup(volume.id).is_incremental


def test_an_attached_volume_is_backed_up_only_with_force(guide: Guide) -> None:
    central, dcn0 = guide.sites["central"], guide.sites["dcn0"]
    volume = dcn0.volumes.create_volume(size=1)
    dcn0.volumes.create_server(volume_id=volume.id)
    with pytest.raises(Conflict, match="needs --force"):
        central.volumes.create_backup(volume.id)
    backup = central.volumes.create_backup(volume.id, force=True)
    assert backup.status == "available" and backup.moved == 0  # a blank volume: nothing
    assert dcn0.volumes.volumes.get(volume.id).status == "in-use"


def test_cross_az_attach_false_makes_the_boot_volume_in_the_instances_zone(
    guide: Guide,
) -> None:
    central, dcn0 = guide.sites["central"], guide.sites["dcn0"]
    image = central.upload(random_image(8 * MiB))
    central.copy(image.id, "dcn0")
    server = dcn0.volumes.create_server(image_id=image.id, boot_volume_size=1)
    assert server.status == "ACTIVE" and server.volume_id is not None
    volume = dcn0.volumes.volumes.get(server.volume_id)
    assert (volume.availability_zone, volume.status) == ("dcn0", "in-use")
    assert guide.stat("dcn0", f"volumes/volume-{volume.id}")[1] == f"images/{image.id}@snap"

    # An existing volume of another zone is refused, with Nova's reason.
    other = central.volumes.create_volume(size=1)  # in central's zone
    with pytest.raises(InvalidRequest, match="not in the same availability zone"):
        dcn0.volumes.create_server(volume_id=other.id)
    assert central.volumes.volumes.get(other.id).status == "available"


@pytest.mark.parametrize("kind", ["embedded"])
def test_cross_az_attach_true_creates_the_volume_centrally_and_the_edge_boot_fails(
    tmp_path: Path, kind: str
) -> None:
    guide = build(tmp_path, kind, cross_az_attach=True)
    try:
        central, dcn0 = guide.sites["central"], guide.sites["dcn0"]
        image = central.upload(random_image(8 * MiB))
        server = dcn0.volumes.create_server(image_id=image.id, boot_volume_size=1)
        assert server.status == "ERROR"
        assert server.fault is not None and "cross_az_attach" in server.fault
        assert server.volume_id is not None
        volume = dcn0.volumes.volumes.get(server.volume_id)
        # The volume was made in the default zone (central's), as a clone there.
        assert (volume.availability_zone, volume.status) == ("central", "available")
        assert guide.stat("central", f"volumes/volume-{volume.id}")[1] == (
            f"images/{image.id}@snap"
        )
        dcn0.volumes.delete_server(server.id)
        assert dcn0.volumes.volumes.get(volume.id).status == "available"
    finally:
        close(guide)


def test_a_backup_through_an_edge_says_to_ask_central_and_leaves_nothing(guide: Guide) -> None:
    dcn0 = guide.sites["dcn0"]
    volume = dcn0.volumes.create_volume(size=1)
    with pytest.raises(Forbidden, match="through the API of central"):
        dcn0.volumes.create_backup(volume.id)  # client.external has no caps on backups
    assert dcn0.volumes.backups.list() == []
    assert dcn0.volumes.volumes.get(volume.id).status == "available"
    with guide.cluster("dcn0") as c, c.open(ImageSpec("volumes", f"volume-{volume.id}")) as v:
        assert v.list_snaps() == []
