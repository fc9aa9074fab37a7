"""The DCN guide's storage sequence, on embedded clusters and on three real Ceph clusters:
volumes and instance disks are copy-on-write clones of images/<id>@snap in the zone's own
cluster; an image made at an edge stays there until copied, then boots elsewhere as a clone."""

from __future__ import annotations

import subprocess

import pytest

from ferry.block import ImageSpec
from ferry.errors import Conflict, InUse, InvalidRequest, StorageFull
from tests.volumes.conftest import Guide, MiB, random_image, sha

GiB = 1 << 30


def rbd_info(guide: Guide, cluster: str, spec: str) -> str:
    """`rbd info` from the real rbd CLI (Ceph only)."""
    conf = guide.targets[cluster].removeprefix("ceph:")
    proc = subprocess.run(
        ["rbd", "--conf", conf, "info", spec], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_guides_sequence(guide: Guide) -> None:
    central, dcn0, dcn1 = (guide.sites[n] for n in ("central", "dcn0", "dcn1"))
    data = random_image()
    image = central.upload(data)
    central.copy(image.id, "dcn0")
    assert central.stores(image.id) == {"default_backend", "dcn0"}

    # A volume from the image at dcn0: a clone in dcn0's volumes pool, parent images/<id>@snap.
    volume = dcn0.volumes.create_volume(size=1, image_id=image.id, name="vol0")
    assert (volume.status, volume.availability_zone, volume.bootable) == ("available", "dcn0", True)
    assert volume.volume_image_metadata is not None
    assert volume.volume_image_metadata["image_id"] == image.id
    assert volume.volume_image_metadata["checksum"] == image.checksum
    assert volume.source["action"] == "clone" and volume.source["moved"] == 0
    spec = f"volumes/volume-{volume.id}"
    assert guide.stat("dcn0", spec) == (GiB, f"images/{image.id}@snap")
    if guide.kind == "ceph":
        assert f"parent: images/{image.id}@snap" in rbd_info(guide, "dcn0", spec)
    assert guide.digest("dcn0", spec, len(data)) == guide.digest("dcn0", f"images/{image.id}@snap")

    # A server booted from that volume; a snapshot of the in-use volume needs --force.
    server = dcn0.volumes.create_server(name="vm0", volume_id=volume.id)
    assert server.status == "ACTIVE" and server.availability_zone == "dcn0"
    assert dcn0.volumes.volumes.get(volume.id).status == "in-use"
    with pytest.raises(Conflict, match="needs --force"):
        dcn0.volumes.create_snapshot(volume.id)
    snapshot = dcn0.volumes.create_snapshot(volume.id, name="snap0", force=True)
    assert snapshot.status == "available"
    assert guide.stat("dcn0", spec)[1] == f"images/{image.id}@snap"  # the parent is intact
    with guide.cluster("dcn0") as c, c.open(ImageSpec.parse(spec)) as vol:
        assert [(s.name, s.protected) for s in vol.list_snaps()] == [
            (f"snapshot-{snapshot.id}", True)
        ]
    from_snap = dcn0.volumes.create_volume(snapshot_id=snapshot.id)
    assert guide.stat("dcn0", f"volumes/volume-{from_snap.id}")[1] == (
        f"volumes/volume-{volume.id}@snapshot-{snapshot.id}"
    )
    with pytest.raises(InUse, match="dependent volumes"):
        dcn0.volumes.delete_snapshot(snapshot.id)

    # An instance at dcn0 booted from the image: vms/<uuid>_disk, a clone.
    vm1 = dcn0.volumes.create_server(name="vm1", image_id=image.id)
    disk = f"vms/{vm1.id}_disk"
    assert guide.stat("dcn0", disk) == (len(data), f"images/{image.id}@snap")
    # Its data changes (as the guest would write), then it becomes an image at dcn0 only.
    with guide.cluster("dcn0") as c, c.open(ImageSpec.parse(disk)) as d:
        d.write(0, b"written by the guest".ljust(MiB, b"!"))
        changed = sha(d)
    made = dcn0.volumes.create_server_image(vm1.id, "vm1-snapshot")
    assert made.status == "active" and made.properties["instance_uuid"] == vm1.id
    assert dcn0.stores(made.id) == {"dcn0"}
    assert central.stores(made.id) == {"dcn0"}
    assert guide.digest("dcn0", f"images/{made.id}@snap") == changed

    # Copy it to central, then on to dcn1, and boot it there as a clone.
    dcn0.copy(made.id, "central")
    assert central.stores(made.id) == {"dcn0", "default_backend"}
    central.copy(made.id, "dcn1")
    assert dcn1.stores(made.id) == {"central", "dcn0", "dcn1"}
    vm2 = dcn1.volumes.create_server(name="vm2", image_id=made.id)
    assert vm2.image_source is not None and vm2.image_source["action"] == "clone"
    assert guide.stat("dcn1", f"vms/{vm2.id}_disk")[1] == f"images/{made.id}@snap"
    assert guide.digest("dcn1", f"vms/{vm2.id}_disk") == changed

    # Clean-up follows Cinder's rules: nothing with dependants goes.
    with pytest.raises(InUse, match="attached"):
        dcn0.volumes.delete_volume(volume.id)
    dcn0.volumes.delete_server(server.id)
    with pytest.raises(InUse, match="snapshot"):
        dcn0.volumes.delete_volume(volume.id)
    dcn0.volumes.delete_volume(from_snap.id)
    dcn0.volumes.delete_snapshot(snapshot.id)
    dcn0.volumes.delete_volume(volume.id)
    for vm in (vm1, vm2):
        guide.sites[vm.availability_zone].volumes.delete_server(vm.id)
    with guide.cluster("dcn0") as c:
        left = set(c.list_images("volumes")) | set(c.list_images("vms"))
    assert not left & {f"volume-{volume.id}", f"{vm1.id}_disk", f"volume-{from_snap.id}"}


def test_an_image_missing_in_the_zone_is_copied_once_then_cloned(guide: Guide) -> None:
    central, dcn1 = guide.sites["central"], guide.sites["dcn1"]
    data = random_image()
    image = central.upload(data)
    assert "dcn1" not in central.stores(image.id)

    before = dcn1.traffic()
    first = dcn1.volumes.create_server(image_id=image.id)
    after = dcn1.traffic()
    assert first.image_source is not None
    assert first.image_source["action"] == "copied"
    assert first.image_source["moved"] == 8 * MiB  # the non-zero data, once
    assert after["central"][0] - before["central"][0] == 8 * MiB  # read across the WAN
    assert after["dcn1"][1] - before["dcn1"][1] == 8 * MiB
    assert dcn1.stores(image.id) == {"central", "dcn1"}
    assert guide.stat("dcn1", f"vms/{first.id}_disk")[1] == f"images/{image.id}@snap"

    second = dcn1.volumes.create_server(image_id=image.id)
    assert second.image_source is not None and second.image_source["action"] == "clone"
    assert dcn1.traffic() == after  # nothing moved between sites, nor at all
    volume = dcn1.volumes.create_volume(image_id=image.id, size=1)
    assert volume.source["action"] == "clone" and dcn1.traffic() == after


def test_stream_and_refuse_policies(guide: Guide) -> None:
    central, dcn0 = guide.sites["central"], guide.sites["dcn0"]
    data = random_image()
    image = central.upload(data)
    with pytest.raises(Conflict, match="never_download_image_if_on_rbd"):
        dcn0.volumes.create_server(image_id=image.id, missing_image="refuse")
    assert dcn0.volumes.servers.list() == []

    streamed = dcn0.volumes.create_server(image_id=image.id, missing_image="stream")
    assert streamed.image_source is not None
    assert streamed.image_source["action"] == "streamed"
    assert streamed.image_source["moved"] == 8 * MiB
    disk = f"vms/{streamed.id}_disk"
    assert guide.stat("dcn0", disk) == (len(data), None)  # full and flat, nothing cached
    assert dcn0.stores(image.id) == {"central"}
    assert guide.digest("dcn0", disk) == guide.digest("central", f"images/{image.id}@snap")


def test_a_clone_deeper_than_the_maximum_is_flattened(guide: Guide) -> None:
    dcn0 = guide.sites["dcn0"]
    image = dcn0.upload(random_image(8 * MiB))
    volume = dcn0.volumes.create_volume(image_id=image.id)
    depths = [volume.source["depth"]]
    for _ in range(5):
        volume = dcn0.volumes.create_volume(source_volid=volume.id)
        depths.append(volume.source["depth"])
    # images@snap -> v1 -> v2 -> ... : depth 1..5, then the sixth is flattened
    assert depths == [1, 2, 3, 4, 5, 0]
    assert volume.source["flattened"] is True
    assert guide.stat("dcn0", f"volumes/volume-{volume.id}")[1] is None


def test_blank_volume_and_clear_errors(guide: Guide) -> None:
    dcn0 = guide.sites["dcn0"]
    blank = dcn0.volumes.create_volume(size=2)
    assert guide.stat("dcn0", f"volumes/volume-{blank.id}") == (2 * GiB, None)
    assert not blank.bootable
    with pytest.raises(InvalidRequest, match="needs a size"):
        dcn0.volumes.create_volume()
    with pytest.raises(InvalidRequest, match="Availability zone 'nowhere' is invalid"):
        dcn0.volumes.create_volume(size=1, availability_zone="nowhere")
    with pytest.raises(InvalidRequest, match="not reachable from site dcn0"):
        dcn0.volumes.create_volume(size=1, availability_zone="dcn1")
    image = dcn0.upload(random_image(8 * MiB))
    dcn0.images.update(image.id, [{"op": "replace", "path": "/min_disk", "value": 2}])
    with pytest.raises(InvalidRequest, match="cannot be smaller than its source's 2GB"):
        dcn0.volumes.create_volume(size=1, image_id=image.id)
    assert dcn0.volumes.create_volume(image_id=image.id).size == 2
    assert [v.status for v in dcn0.volumes.volumes.list()] == ["available", "available"]


def test_a_failed_creation_leaves_no_row_and_no_block_image(
    guide: Guide, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full cluster in the middle of making a volume (mocked: filling a real cluster here
    would take minutes): the error comes back, and nothing half-made stays."""
    dcn0 = guide.sites["dcn0"]
    image = dcn0.upload(random_image(8 * MiB))

    def full(*args: object) -> None:
        raise StorageFull("No space left on device")

    monkeypatch.setattr(type(dcn0.volumes), "_grow", staticmethod(full))
    with guide.cluster("dcn0") as c:
        before = set(c.list_images("volumes")), set(c.list_images("vms"))
    with pytest.raises(StorageFull):
        dcn0.volumes.create_volume(image_id=image.id, size=1)
    with pytest.raises(StorageFull):
        dcn0.volumes.create_server(image_id=image.id, boot_volume_size=1)
    assert dcn0.volumes.volumes.list() == [] and dcn0.volumes.servers.list() == []
    with guide.cluster("dcn0") as c:
        assert (set(c.list_images("volumes")), set(c.list_images("vms"))) == before
    monkeypatch.undo()
    assert dcn0.volumes.create_volume(image_id=image.id, size=1).status == "available"


def test_an_image_from_a_volume_booted_server_holds_the_volumes_data(guide: Guide) -> None:
    dcn0 = guide.sites["dcn0"]
    data = random_image(8 * MiB)
    image = dcn0.upload(data)
    server = dcn0.volumes.create_server(image_id=image.id, boot_volume_size=1)
    assert server.volume_id is not None
    made = dcn0.volumes.create_server_image(server.id, "from-volume")
    assert (made.size, made.stores) == (GiB, ("dcn0",))
    spec = f"volumes/volume-{server.volume_id}"
    assert guide.digest("dcn0", f"images/{made.id}@snap") == guide.digest("dcn0", spec)
    with guide.cluster("dcn0") as c, c.open(ImageSpec.parse(spec)) as v:
        assert v.list_snaps() == []  # the snapshot it was read at is gone
