"""``ferry block`` and ``ferry key`` as an operator runs them: real processes, real files."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ceph_conf, unique

MiB = 1 << 20


def ferry(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "ferry", *args], capture_output=True, text=True, timeout=120
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def cl(tmp_path: Path) -> list[str]:
    ferry("block", "--cluster", str(tmp_path / "c"), "init", "--name", "dcn0")
    return ["block", "--cluster", str(tmp_path / "c")]


def test_init_writes_a_ceph_style_admin_keyring(tmp_path: Path) -> None:
    out = ferry("block", "--cluster", str(tmp_path / "c"), "init", "--name", "dcn0").stdout
    keyring = tmp_path / "c" / "dcn0.client.admin.keyring"
    assert str(keyring) in out and "pools: backups, images, vms, volumes" in out
    assert keyring.read_text().startswith("[client.admin]\n\tkey = AQ")
    assert oct(keyring.stat().st_mode & 0o777) == "0o600"


def test_the_glance_nova_cinder_workflow(cl: list[str], tmp_path: Path) -> None:
    src = tmp_path / "image.raw"
    with open(src, "wb") as f:
        f.truncate(64 * MiB)
        f.seek(8 * MiB)
        f.write(os.urandom(2 * MiB))
    out = ferry(*cl, "import", str(src), "images/img").stdout
    assert "imported 64 MiB into images/img: 2 MiB of data stored" in out
    ferry(*cl, "snap", "create", "images/img@snap")
    ferry(*cl, "snap", "protect", "images/img@snap")
    ferry(*cl, "clone", "images/img@snap", "vms/inst_disk")
    ferry(*cl, "clone", "images/img@snap", "volumes/volume-1")
    ferry(*cl, "resize", "--size", "1G", "volumes/volume-1")

    lines = ferry(*cl, "ls", "-l", "images").stdout.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "PARENT", "FMT", "PROT", "LOCK"]
    assert lines[1].split() == ["img", "64", "MiB", "2"]
    assert lines[2].split() == ["img@snap", "64", "MiB", "2", "yes"]
    vols = ferry(*cl, "ls", "-l", "volumes").stdout.splitlines()
    assert vols[1].split() == ["volume-1", "1", "GiB", "images/img@snap", "2"]

    kids = ferry(*cl, "children", "images/img@snap").stdout.split()
    assert kids == ["vms/inst_disk", "volumes/volume-1"]
    info = ferry(*cl, "info", "vms/inst_disk").stdout
    assert "\tparent: images/img@snap\n" in info and "order 22 (4 MiB objects)" in info
    diff = ferry(*cl, "diff", "images/img").stdout.splitlines()
    assert diff == ["Offset   Length   Type", f"{8 * MiB}  {4 * MiB}  data"]
    du = ferry(*cl, "du", "vms/inst_disk").stdout.splitlines()[1].split()
    assert du == ["vms/inst_disk", "64", "MiB", "0", "B"]

    dst = tmp_path / "out.raw"
    ferry(*cl, "export", "images/img@snap", str(dst))
    assert dst.read_bytes() == src.read_bytes()
    assert "clean" in ferry(*cl, "check").stdout


def test_errors_are_one_line_with_errno_exit_codes(cl: list[str]) -> None:
    ferry(*cl, "create", "--size", "1M", "images/a")
    ferry(*cl, "snap", "create", "images/a@s")
    cases = [
        (("rm", "images/a"), 16, "has 1 snapshot"),
        (("create", "--size", "1M", "images/a"), 17, "already exists"),
        (("info", "images/nope"), 2, "does not exist"),
        (("create", "--size", "lots", "images/b"), 22, "cannot parse size"),
        (("clone", "images/a@s", "vms/c"), 16, "must be protected"),
    ]
    for args, code, words in cases:
        proc = ferry(*cl, *args, ok=False)
        assert proc.returncode == code, (args, proc.stderr)
        assert words in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_cluster_is_a_clear_error(tmp_path: Path) -> None:
    proc = ferry("block", "--cluster", str(tmp_path / "none"), "ls", "images", ok=False)
    assert proc.returncode == 2 and "no embedded cluster at" in proc.stderr


def test_auth_add_and_caps_from_the_command_line(cl: list[str], tmp_path: Path) -> None:
    caps = "profile rbd pool=vms, profile rbd pool=volumes, profile rbd pool=images"
    out = ferry(*cl, "auth", "add", "client.external", "mon", "profile rbd", "osd", caps).stdout
    keyring = tmp_path / "dcn0.client.external.keyring"
    keyring.write_text(out)
    assert f'caps osd = "{caps}"' in out
    ext = [*cl, "--id", "external", "--keyring", str(keyring)]
    ferry(*ext, "create", "--size", "1M", "volumes/v")
    proc = ferry(*ext, "ls", "backups", ok=False)
    assert proc.returncode == 1 and "Operation not permitted" in proc.stderr
    assert "client.external" in ferry(*cl, "auth", "ls").stdout
    ferry(*cl, "auth", "del", "client.external")
    assert ferry(*ext, "ls", "volumes", ok=False).returncode == 1


def test_key_generate_prints_a_ceph_key() -> None:
    key = ferry("key", "generate").stdout.strip()
    assert base64.b64decode(key)[:2] == b"\x01\x00" and len(key) == 40


@pytest.mark.ceph
def test_the_same_verbs_on_a_real_ceph_cluster(tmp_path: Path) -> None:
    cl = ["block", "--cluster", f"ceph:{ceph_conf()}", "--id", "external"]
    name = unique("cli")
    src = tmp_path / "image.raw"
    with open(src, "wb") as f:
        f.truncate(32 * MiB)
        f.seek(4 * MiB)
        f.write(os.urandom(MiB))
    out = ferry(*cl, "import", str(src), f"images/{name}").stdout
    assert "1 MiB of data stored" in out
    ferry(*cl, "snap", "create", f"images/{name}@snap")
    ferry(*cl, "snap", "protect", f"images/{name}@snap")
    ferry(*cl, "clone", f"images/{name}@snap", f"vms/{name}_disk")
    rows = [r.split() for r in ferry(*cl, "ls", "-l", "vms").stdout.splitlines()]
    assert [f"{name}_disk", "32", "MiB", f"images/{name}@snap", "2"] in rows
    assert ferry(*cl, "children", f"images/{name}@snap").stdout.split() == [f"vms/{name}_disk"]
    assert f"{4 * MiB}  {4 * MiB}  data" in ferry(*cl, "diff", f"images/{name}").stdout
    dst = tmp_path / "out.raw"
    ferry(*cl, "export", f"images/{name}@snap", str(dst))
    assert dst.read_bytes() == src.read_bytes()
    denied = ferry(*cl, "ls", "backups", ok=False)
    assert denied.returncode == 1
    assert "Operation not permitted" in denied.stderr
    busy = ferry(*cl, "snap", "unprotect", f"images/{name}@snap", ok=False)
    assert busy.returncode == 16
    only_embedded = ferry(*cl, "check", ok=False)
    assert only_embedded.returncode == 22
    assert "embedded clusters only" in only_embedded.stderr
