"""`ferry demo`: the guide's workflow on three embedded sites, as a newcomer runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from ferry.block.embedded import EmbeddedCluster


def test_demo_runs_the_guides_workflow(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "ferry", "demo", "--dir", str(work), "--size", "64M"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    image_id, snapshot_id = re.findall(r"image (\S+) at (?:central|dcn0): stores", out)
    fedora_id = re.findall(r"image (\S+) at dcn1: stores", out)[-1]
    assert f"image {image_id} at central: stores default_backend\n" in out
    assert f"image {snapshot_id} at dcn0: stores dcn0\n" in out
    assert f"image {snapshot_id} at dcn1: stores central,dcn0,dcn1\n" in out
    assert f"image {fedora_id} at dcn1: stores central,dcn1\n" in out
    assert "dcn1 read 0 B from central" in out
    assert f"image-import {image_id} --import-method copy-image --stores dcn0,dcn1" in out
    # the clones and their parents, as rbd ls -l prints them
    volume_id = re.search(r"volume vol0 (\S+): available, bootable true", out)
    assert volume_id, out
    row = rf"volume-{volume_id[1]} +1 GiB +images/{image_id}@snap +2"
    assert re.search(row, out), out
    assert re.search(rf"\S+_disk +64 MiB +images/{image_id}@snap", out)
    assert re.search(rf"\S+_disk +64 MiB +images/{snapshot_id}@snap", out)  # vm2 at dcn1
    assert re.search(r"vm3: image copied into store dcn1, [1-9][\d.]* MiB moved", out)
    assert "vm4: image clone into store dcn1, 0 B moved" in out
    assert "backup monday: full" in out
    assert "backup tuesday: incremental, 4 MiB read from dcn0" in out
    assert "crossed between sites for five copies and two backups" in out
    for site in ("central", "dcn0", "dcn1"):
        with EmbeddedCluster.connect(work / "clusters" / site) as cluster:
            assert {image_id, snapshot_id} <= set(cluster.list_images("images"))
            assert cluster.check().ok
    with EmbeddedCluster.connect(work / "clusters" / "dcn0") as dcn0:
        volumes = dcn0.list_images("volumes")
        assert f"volume-{volume_id[1]}" in volumes and len(volumes) == 2  # vol0, its restore
    with EmbeddedCluster.connect(work / "clusters" / "central") as central:
        assert len(central.list_images("backups")) == 1
