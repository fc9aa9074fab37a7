"""Keys in Ceph's format, keyrings, and OSD caps on the embedded cluster."""

from __future__ import annotations

import base64
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from ferry.block import ImageSpec
from ferry.block.auth import (
    Client,
    OsdCaps,
    format_keyring,
    generate_key,
    parse_keyring,
    validate_key,
)
from ferry.block.embedded import EmbeddedCluster
from ferry.errors import AlreadyExists, Forbidden, InvalidRequest, NotFound


def test_generated_key_has_cephs_header() -> None:
    key = generate_key(now=1_700_000_000)
    raw = base64.b64decode(key)
    assert len(raw) == 28 and len(key) == 40
    assert struct.unpack("<hiih", raw[:12]) == (1, 1_700_000_000, 0, 16)
    assert generate_key() != generate_key()
    created = struct.unpack("<hiih", base64.b64decode(generate_key())[:12])[1]
    assert abs(created - time.time()) < 60


def test_malformed_keys_are_refused() -> None:
    for bad in ("not base64!", base64.b64encode(b"x" * 28).decode(), "AQBmr1hn"):
        with pytest.raises(InvalidRequest):
            validate_key(bad)


@pytest.mark.skipif(not shutil.which("ceph-authtool"), reason="ceph-authtool not installed")
def test_real_ceph_authtool_and_ferry_accept_each_others_keys(tmp_path: Path) -> None:
    theirs = subprocess.run(
        ["ceph-authtool", "--gen-print-key"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert validate_key(theirs) == theirs
    ours = generate_key()
    keyring = tmp_path / "k"
    subprocess.run(
        ["ceph-authtool", "--create-keyring", str(keyring), "--name", "client.x",
         "--add-key", ours, "--cap", "osd", "profile rbd pool=images"],
        capture_output=True, check=True,
    )  # fmt: skip
    assert parse_keyring(keyring.read_text()) == [
        Client("x", ours, {"osd": "profile rbd pool=images"})
    ]


def test_keyring_roundtrip() -> None:
    clients = [
        Client("admin", generate_key(), {"mon": "allow *", "osd": "allow *"}),
        Client("external", generate_key(), {"osd": "profile rbd pool=images"}),
    ]
    text = format_keyring(clients)
    assert text.startswith("[client.admin]\n\tkey = ")
    assert '\tcaps osd = "profile rbd pool=images"\n' in text
    assert parse_keyring(text) == clients


GUIDE_CAPS = "profile rbd pool=vms, profile rbd pool=volumes, profile rbd pool=images"


@pytest.mark.parametrize(
    ("caps", "pool", "read", "write"),
    [
        ("allow *", "backups", True, True),
        ("profile rbd pool=vms, profile rbd pool=volumes, profile rbd pool=images", "vms", 1, 1),
        (
            "profile rbd pool=vms, profile rbd pool=volumes, profile rbd pool=images",
            "backups",
            0,
            0,
        ),
        ("allow rwx pool=volumes", "volumes", True, True),
        ("allow rwx pool=volumes", "images", False, False),
        ("allow rx pool=images", "images", True, False),
        ("profile rbd-read-only pool=images", "images", True, False),
        ("profile rbd", "anything", True, True),
        ("", "images", False, False),
    ],
)
def test_osd_caps(caps: str, pool: str, read: bool, write: bool) -> None:
    parsed = OsdCaps.parse(caps)
    assert parsed.allows(pool, write=False) == bool(read)
    assert parsed.allows(pool, write=True) == bool(write)


def test_unparseable_caps_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="cannot parse"):
        OsdCaps.parse("allow everything")


def test_wrong_key_or_unknown_client_is_refused(embedded: EmbeddedCluster) -> None:
    root = embedded.layout.root
    with pytest.raises(Forbidden, match="authentication failed"):
        EmbeddedCluster.connect(root, key=generate_key())
    with pytest.raises(Forbidden):
        EmbeddedCluster.connect(root, client="nobody", key=generate_key())


def test_read_only_caps_read_but_never_write(embedded: EmbeddedCluster) -> None:
    embedded.create("images", "img", 1 << 20)
    with embedded.open(ImageSpec("images", "img")) as image:
        image.write(0, b"data")
    reader = embedded.auth_add("client.glance-ro", {"osd": "allow rx pool=images"})
    ro = EmbeddedCluster.connect(embedded.layout.root, client="glance-ro", key=reader.key)
    with ro.open(ImageSpec("images", "img")) as image:
        assert image.read(0, 4) == b"data"
        for attempt in (
            lambda: image.write(0, b"x"),
            lambda: image.create_snap("s"),
            lambda: image.resize(1),
        ):
            with pytest.raises(Forbidden, match="may not write pool 'images'"):
                attempt()
    with pytest.raises(Forbidden):
        ro.create("images", "new", 1)
    with pytest.raises(Forbidden):
        ro.remove("images", "img")


def test_only_admins_manage_clients(embedded: EmbeddedCluster) -> None:
    ext = embedded.auth_add("client.external", {"mon": "profile rbd", "osd": "profile rbd"})
    with pytest.raises(AlreadyExists):
        embedded.auth_add("client.external", {})
    client = EmbeddedCluster.connect(embedded.layout.root, client="external", key=ext.key)
    with pytest.raises(Forbidden):
        client.auth_add("client.evil", {"osd": "allow *"})
    with pytest.raises(Forbidden):
        client.check()
    assert [c.name for c in embedded.auth_ls()] == ["admin", "external"]
    embedded.auth_del("external")
    with pytest.raises(NotFound):
        embedded.auth_del("external")
    with pytest.raises(Forbidden):
        EmbeddedCluster.connect(embedded.layout.root, client="external", key=ext.key)


def test_imported_key_is_kept(embedded: EmbeddedCluster, tmp_path: Path) -> None:
    key = generate_key()
    embedded.auth_add("client.dcn0", {"osd": "profile rbd pool=images"}, key=key)
    keyring = tmp_path / "central.client.dcn0.keyring"
    keyring.write_text(format_keyring([embedded.auth_get("dcn0")]))
    c = EmbeddedCluster.connect(embedded.layout.root, client="dcn0", keyring=keyring)
    assert c.list_images("images") == []


@pytest.mark.parametrize("pool", ["..", ".", "../pools", ".locks", "a/b", ""])
def test_hostile_pool_names_are_refused(embedded: EmbeddedCluster, pool: str) -> None:
    for attempt in (
        lambda: embedded.list_images(pool),
        lambda: embedded.create(pool, "x", 1),
        lambda: embedded.open(ImageSpec(pool, "auth")),
    ):
        with pytest.raises(InvalidRequest, match="bad pool name"):
            attempt()


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", "x@y", "", "a" * 300, "../../etc"])
def test_hostile_image_and_snapshot_names_are_refused(embedded: EmbeddedCluster, name: str) -> None:
    with pytest.raises(InvalidRequest):
        embedded.create("images", name, 1)
    embedded.create("images", "ok", 1)
    with embedded.open(ImageSpec("images", "ok")) as image, pytest.raises(InvalidRequest):
        image.create_snap(name)
    assert embedded.list_images("images") == ["ok"]
