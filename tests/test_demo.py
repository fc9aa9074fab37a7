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
    assert f"image {image_id} at central: stores default_backend\n" in out
    assert f"image {snapshot_id} at dcn0: stores dcn0\n" in out
    assert f"image {snapshot_id} at dcn1: stores central,dcn0,dcn1\n" in out
    assert "dcn1 read 0 B from central" in out
    assert f"image-import {image_id} --import-method copy-image --stores dcn0,dcn1" in out
    assert "crossed between sites for four copies" in out
    # every cluster holds both images, with Glance's protected snapshot
    for site in ("central", "dcn0", "dcn1"):
        with EmbeddedCluster.connect(work / "clusters" / site) as cluster:
            assert {image_id, snapshot_id} <= set(cluster.list_images("images"))
            assert cluster.check().ok
