"""``ferry volume`` and ``ferry server`` as a user runs them (subprocesses) against the guide's
three running sites: volumes and servers' disks at an edge, backups at central."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ferry.block.ops import format_size
from tests.api.test_ferry_image import rows
from tests.api.test_glance_cli import MiB, image_file
from tests.test_sites import Deployment, deployment, write_topology  # noqa: F401 - the fixture

MISSING = "00000000-0000-0000-0000-000000000000"


def ferry(url: str, group: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """``ferry GROUP --url URL ARGS``, with room for Rich's tables."""
    proc = subprocess.run(
        [sys.executable, "-m", "ferry", group, "--url", url, *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def fields(stdout: str) -> dict[str, str]:
    """A ``show`` table: field -> value."""
    return dict(rows(stdout))


def table(stdout: str) -> dict[str, list[str]]:
    """A ``list`` table: id -> the other cells."""
    return {row[0]: row[1:] for row in rows(stdout)}


def upload(url: str, tmp: Path, *stores: str) -> str:
    """A raw image uploaded at ``url``'s default store, then copied into ``stores``."""
    path = image_file(tmp, size=6 * MiB)  # 3 MiB of random data, the rest a hole
    image = fields(ferry(url, "image", "create", "cirros", "--file", str(path)).stdout)
    if stores:
        ferry(url, "image", "copy", image["id"], *(a for s in stores for a in ("--to", s)))
    return image["id"]


def test_volumes_snapshots_and_servers_at_an_edge(
    deployment: Deployment,  # noqa: F811
    tmp_path: Path,
) -> None:
    central, edge = deployment.urls["central"], deployment.urls["dcn0"]
    image_id = upload(central, tmp_path, "dcn0")
    parent = f"images/{image_id}@snap"

    # A volume from the image at dcn0: a clone of the image in dcn0's cluster.
    made = fields(ferry(edge, "volume", "create", "--image", image_id, "--name", "vol0").stdout)
    volume_id = made["id"]
    shown = fields(ferry(edge, "volume", "show", volume_id).stdout)
    assert made == shown
    assert (shown["status"], shown["availability_zone"], shown["bootable"]) == (
        "available", "dcn0", "true"
    )  # fmt: skip
    assert (shown["ferry.parent"], shown["ferry.action"], shown["ferry.moved"]) == (
        parent, "clone", "0"
    )  # fmt: skip
    listed = table(ferry(edge, "volume", "list").stdout)
    assert listed == {volume_id: ["vol0", "available", "1 GiB", "dcn0", "true", parent]}
    assert table(ferry(edge, "volume", "list", "--az", "dcn1").stdout) == {}

    # Boot from it; a snapshot of the in-use volume needs --force.
    vm0 = fields(ferry(edge, "server", "create", "--volume", volume_id, "vm0").stdout)
    assert vm0["status"] == "ACTIVE"
    assert fields(ferry(edge, "volume", "show", volume_id).stdout)["status"] == "in-use"
    refused = ferry(edge, "volume", "snapshot", "create", volume_id, ok=False)
    assert refused.returncode == 16  # EBUSY: a 409
    assert refused.stderr == (
        f"ferry: error: Volume {volume_id} is in-use; snapshotting an attached volume needs "
        "--force\n"
    )
    snap = fields(
        ferry(edge, "volume", "snapshot", "create", volume_id, "--force", "--name", "s0").stdout
    )
    assert (snap["status"], snap["volume_id"], snap["name"]) == ("available", volume_id, "s0")
    assert snap["ferry.block_snapshot"] == f"volumes/volume-{volume_id}@snapshot-{snap['id']}"
    snaps = table(ferry(edge, "volume", "snapshot", "list", "--volume", volume_id).stdout)
    assert snaps == {snap["id"]: [volume_id, "s0", "available", "1 GiB"]}

    # Without its server the volume is available again, but its snapshot keeps it.
    ferry(edge, "server", "delete", vm0["id"])
    refused = ferry(edge, "volume", "delete", volume_id, ok=False)
    assert refused.returncode == 16
    assert refused.stderr == (
        f"ferry: error: Volume {volume_id} still has 1 dependent snapshot(s) ({snap['id']}); "
        "delete them first\n"
    )
    ferry(edge, "volume", "snapshot", "delete", snap["id"])
    assert ferry(edge, "volume", "delete", volume_id).stdout == f"deleted volume {volume_id}\n"
    assert table(ferry(edge, "volume", "list").stdout) == {}

    # A server booted from the image: its disk a clone in dcn0's vms pool; stop and start.
    vm1 = fields(ferry(edge, "server", "create", "--image", image_id, "vm1").stdout)
    assert (vm1["status"], vm1["OS-EXT-AZ:availability_zone"]) == ("ACTIVE", "dcn0")
    assert vm1["ferry.image_source.parent"] == parent
    disk = f"vms/{vm1['id']}_disk"
    listed = table(ferry(edge, "server", "list").stdout)
    assert listed == {vm1["id"]: ["vm1", "ACTIVE", "dcn0", image_id, disk, "clone, 0 B moved"]}
    assert ferry(edge, "server", "stop", vm1["id"]).stdout == f"server {vm1['id']} is SHUTOFF\n"
    assert fields(ferry(edge, "server", "show", vm1["id"]).stdout)["status"] == "SHUTOFF"
    assert ferry(edge, "server", "start", vm1["id"]).stdout == f"server {vm1['id']} is ACTIVE\n"
    assert fields(ferry(edge, "server", "show", vm1["id"]).stdout)["status"] == "ACTIVE"

    # Its disk becomes an image in dcn0's store only, as every site sees it.
    made = fields(ferry(edge, "server", "image", "create", "--name", "vm1-snap", vm1["id"]).stdout)
    assert (made["name"], made["status"], made["stores"]) == ("vm1-snap", "active", "dcn0")
    at_central = fields(ferry(central, "image", "show", made["id"]).stdout)
    assert (at_central["status"], at_central["stores"]) == ("active", "dcn0")

    # A volume-booted server from an image moved nowhere: the volume is a clone too.
    boot_from_volume = ("server", "create", "--image", image_id, "--boot-from-volume", "2")
    vm2 = fields(ferry(edge, *boot_from_volume, "vm2").stdout)
    boot = next(r for r in rows(ferry(edge, "volume", "list").stdout) if r[1] == "vm2-boot")
    assert boot[2:] == ["in-use", "2 GiB", "dcn0", "true", parent]
    assert table(ferry(edge, "server", "list").stdout)[vm2["id"]][4] == f"volume {boot[0]}"


def test_backups_are_full_then_incremental_and_restore(
    deployment: Deployment,  # noqa: F811
    tmp_path: Path,
) -> None:
    central = deployment.urls["central"]  # backups go to central's cluster
    image_id = upload(central, tmp_path)
    volume_id = fields(ferry(central, "volume", "create", "--image", image_id).stdout)["id"]

    first = fields(ferry(central, "volume", "backup", "create", volume_id, "--name", "b1").stdout)
    second = fields(ferry(central, "volume", "backup", "create", volume_id, "--name", "b2").stdout)
    assert (first["status"], first["is_incremental"]) == ("available", "false")
    assert (second["status"], second["is_incremental"]) == ("available", "true")
    moved = int(first["ferry.moved"])
    assert 3 * MiB <= moved < 6 * MiB  # the image's data, in whole objects, not its hole
    assert second["ferry.moved"] == "0"  # nothing changed since the first
    listed = table(ferry(central, "volume", "backup", "list", "--volume", volume_id).stdout)
    assert {i: r[1:2] + r[5:] for i, r in listed.items()} == {
        first["id"]: ["b1", "false", format_size(moved)],
        second["id"]: ["b2", "true", "0 B"],
    }

    # The incremental restores on its own, into a new volume in the volume's zone.
    restored = fields(
        ferry(central, "volume", "backup", "restore", second["id"], "--name", "r2").stdout
    )
    assert (restored["name"], restored["status"], restored["availability_zone"]) == (
        "r2", "available", "central"
    )  # fmt: skip
    assert restored["ferry.backup_id"] == second["id"]
    assert restored["id"] in table(ferry(central, "volume", "list").stdout)

    deleted = ferry(central, "volume", "backup", "delete", second["id"])
    assert deleted.stdout == f"deleted backup {second['id']}\n"
    assert list(table(ferry(central, "volume", "backup", "list").stdout)) == [first["id"]]


def test_errors_are_one_line_with_the_exit_code_of_their_kind(
    deployment: Deployment,  # noqa: F811
) -> None:
    edge = deployment.urls["dcn0"]
    for group, args in [("volume", ["show"]), ("volume", ["delete"]), ("server", ["show"])]:
        proc = ferry(edge, group, *args, MISSING, ok=False)
        assert proc.returncode == 2, proc.stderr  # ENOENT
        noun = group.capitalize()
        assert proc.stderr == f"ferry: error: {noun} {MISSING} could not be found.\n"
        assert proc.stdout == ""
    proc = ferry(edge, "volume", "create", ok=False)
    assert (proc.returncode, proc.stderr) == (22, "ferry: error: a blank volume needs a size\n")
    proc = ferry(edge, "server", "create", "vm", ok=False)
    assert proc.returncode == 22
    assert proc.stderr == "ferry: error: boot from exactly one of an image or a volume\n"


@pytest.fixture
def cross_az(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The guide's sites with cross_az_attach true at dcn0 (embedded clusters); their URLs."""
    path, _ = write_topology(tmp_path, "embedded")
    raw = yaml.safe_load(path.read_text())
    raw["sites"]["dcn0"]["compute"] = {"cross_az_attach": True}
    path.write_text(yaml.safe_dump(raw))
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ferry", "up", "--topology", str(path)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C stops every site" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield {name: f"http://{site['listen']}" for name, site in raw["sites"].items()}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_a_server_in_error_shows_its_fault_and_fails(
    cross_az: dict[str, str], tmp_path: Path
) -> None:
    image_id = upload(cross_az["central"], tmp_path, "dcn0")
    edge = cross_az["dcn0"]
    boot_from_volume = ("server", "create", "--image", image_id, "--boot-from-volume", "1")
    proc = ferry(edge, *boot_from_volume, "vm", ok=False)
    assert proc.returncode == 1
    server = fields(proc.stdout)
    assert server["status"] == "ERROR"
    assert server["fault.message"].startswith("Volume ")
    assert proc.stderr.startswith(f"ferry: error: server {server['id']} is in ERROR: Volume ")
    assert "with cross_az_attach true a boot volume is created in the default zone" in proc.stderr
    assert proc.stderr.count("\n") == 1
    listed = table(ferry(edge, "server", "list").stdout)
    assert listed[server["id"]][:3] == ["vm", "ERROR", "dcn0"]
