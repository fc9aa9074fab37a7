"""image_conversion with the real qemu-img: round trips, and hostile images refused."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.errors import Cancelled, FerryError, InvalidRequest, StorageFull, TooLarge
from ferry.images import convert
from ferry.images.convert import Limits, check_safe, convert_to_raw, info
from ferry.images.formats import HEAD, inspect

SIZE = 16 << 20
CHUNKS = {0: b"boot", 3 * 2**20 + 12345: b"middle", 9 * 2**20: b"later", SIZE - 4096: b"end"}


@pytest.fixture(autouse=True)
def _qemu_img() -> None:
    if shutil.which("qemu-img") is None:
        reason = "qemu-img is not installed (apt-get install qemu-utils)"
        if os.environ.get("FERRY_REQUIRE_QEMU") == "1":
            pytest.fail(f"FERRY_REQUIRE_QEMU=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture
def out(tmp_path: Path) -> Iterator[Path]:
    """An empty directory for dest; after each test it holds dest or nothing, never a temp."""
    d = tmp_path / "out"
    d.mkdir()
    yield d
    assert [p.name for p in d.iterdir()] in ([], ["disk.raw"])


def qemu_img(*args: str | Path) -> None:
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


def sparse_raw(path: Path) -> bytes:
    """A mostly-hole raw disk with a 64 KiB of data at a few offsets."""
    with path.open("wb") as f:
        f.truncate(SIZE)
        for offset, tag in CHUNKS.items():
            f.seek(offset)
            f.write((tag * 65536)[: min(65536, SIZE - offset)])
    return path.read_bytes()


def fmt_of(path: Path) -> str:
    with path.open("rb") as f:
        return inspect(f.read(HEAD)).format


def assert_refused(src: Path, fmt: str, dest: Path, *words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_safe(src, fmt)
    for word in words:
        assert word in str(caught.value)
    with pytest.raises(InvalidRequest):
        convert_to_raw(src, fmt, dest)
    assert not dest.exists()


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "driver", "options"),
    [
        ("qcow2", "qcow2", ""),
        ("vmdk", "vmdk", "subformat=monolithicSparse"),
        ("vmdk", "vmdk", "subformat=streamOptimized"),
        ("vhd", "vpc", "subformat=dynamic,force_size=on"),
        ("vhdx", "vhdx", ""),
        ("vdi", "vdi", ""),
    ],
)
def test_round_trip_is_identical_and_sparse(
    tmp_path: Path, out: Path, fmt: str, driver: str, options: str
) -> None:
    original = sparse_raw(tmp_path / "original.raw")
    image = tmp_path / f"image.{fmt}"
    qemu_img("convert", "-f", "raw", "-O", driver, *(["-o", options] if options else []),
             tmp_path / "original.raw", image)  # fmt: skip
    assert fmt_of(image) == fmt
    check_safe(image, fmt)
    dest = out / "disk.raw"
    convert_to_raw(image, fmt, dest)
    assert dest.read_bytes() == original
    assert dest.stat().st_blocks * 512 < SIZE // 8  # holes stayed holes


def test_info_reports_virtual_size(tmp_path: Path) -> None:
    sparse_raw(tmp_path / "original.raw")
    qemu_img("convert", "-f", "raw", "-O", "qcow2", tmp_path / "original.raw", tmp_path / "a")
    report = info(tmp_path / "a", "qcow2")
    assert report["format"] == "qcow2" and report["virtual-size"] == SIZE


def test_a_name_with_a_colon_is_a_file_not_a_protocol(tmp_path: Path, out: Path) -> None:
    original = sparse_raw(tmp_path / "original.raw")
    image = tmp_path / "nbd:localhost:10809"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", tmp_path / "original.raw", image)
    convert_to_raw(image, "qcow2", out / "disk.raw")
    assert (out / "disk.raw").read_bytes() == original


def test_dest_is_replaced_only_on_success(tmp_path: Path, out: Path) -> None:
    original = sparse_raw(tmp_path / "original.raw")
    qemu_img("convert", "-f", "raw", "-O", "qcow2", tmp_path / "original.raw", tmp_path / "a")
    (out / "disk.raw").write_bytes(b"old")
    convert_to_raw(tmp_path / "a", "qcow2", out / "disk.raw")
    assert (out / "disk.raw").read_bytes() == original


# --- qcow2 ---------------------------------------------------------------------------------


def test_qcow2_backing_file_refused(tmp_path: Path, out: Path) -> None:
    bad = tmp_path / "bad.qcow2"
    qemu_img("create", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", bad, "1M")
    assert_refused(bad, "qcow2", out / "disk.raw", "backing file", "/etc/passwd")


def test_qcow2_external_data_file_refused(tmp_path: Path, out: Path) -> None:
    bad = tmp_path / "bad.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={tmp_path / 'x.raw'}", bad, "1M")
    assert_refused(bad, "qcow2", out / "disk.raw", "external data file")


@pytest.mark.parametrize(
    ("bit", "words"), [(1, "marked corrupt"), (2, "external data file"), (9, "unknown")]
)
def test_qcow2_incompatible_bits_refused(tmp_path: Path, out: Path, bit: int, words: str) -> None:
    bad = tmp_path / "bad.qcow2"
    qemu_img("create", "-f", "qcow2", bad, "1M")
    with bad.open("r+b") as f:
        f.seek(72)
        f.write(struct.pack(">Q", 1 << bit))
    assert_refused(bad, "qcow2", out / "disk.raw", words)


@pytest.mark.parametrize("damage", ["truncated", "garbage after header"])
def test_corrupt_qcow2_refused(tmp_path: Path, out: Path, damage: str) -> None:
    sparse_raw(tmp_path / "original.raw")
    bad = tmp_path / "bad.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", tmp_path / "original.raw", bad)
    data = bad.read_bytes()
    # truncated: the clusters past the cut read as zeros unless qemu-img check notices
    damaged = {"truncated": data[: 300 * 1024], "garbage after header": data[:112] + b"\xff" * 4096}
    bad.write_bytes(damaged[damage])
    with pytest.raises(InvalidRequest):
        convert_to_raw(bad, "qcow2", out / "disk.raw")
    assert not (out / "disk.raw").exists()


def test_bytes_not_in_the_format_named_refused(tmp_path: Path, out: Path) -> None:
    sparse_raw(tmp_path / "original.raw")
    assert_refused(tmp_path / "original.raw", "qcow2", out / "disk.raw", "no qcow2 header")


# --- vmdk ----------------------------------------------------------------------------------

DESCRIPTOR = """\
# Disk DescriptorFile
version=1
CID=12345678
parentCID=ffffffff
createType="{create_type}"

# Extent description
{extents}

# The Disk Data Base
#DDB

ddb.virtualHWVersion = "4"
ddb.adapterType = "ide"
"""


def test_vmdk_descriptor_file_refused(tmp_path: Path, out: Path) -> None:
    bad = tmp_path / "bad.vmdk"
    text = DESCRIPTOR.format(create_type="monolithicFlat", extents='RW 2048 FLAT "/etc/passwd" 0')
    bad.write_text(text)
    # The attack is real: qemu-img left to follow the descriptor copies /etc/passwd.
    qemu_img("convert", "-f", "vmdk", "-O", "raw", bad, tmp_path / "stolen.raw")
    assert (tmp_path / "stolen.raw").read_bytes().startswith(Path("/etc/passwd").read_bytes())
    assert_refused(bad, "vmdk", out / "disk.raw", "descriptor file")
    # Told from its bytes it is raw, and as raw it is only its own text.
    assert fmt_of(bad) == "raw"
    convert_to_raw(bad, "raw", out / "disk.raw")
    assert (out / "disk.raw").read_bytes().rstrip(b"\0") == text.encode()


def sparse_vmdk(tmp_path: Path, descriptor: str, capacity: int | None = None) -> Path:
    """A genuine monolithicSparse vmdk whose embedded descriptor (and capacity) is replaced."""
    (tmp_path / "small.raw").write_bytes(b"\1" * 65536 + b"\0" * (1 << 20))
    image = tmp_path / "bad.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", tmp_path / "small.raw", image)
    data = bytearray(image.read_bytes())
    desc_offset, desc_size = struct.unpack_from("<QQ", data, 28)
    encoded = descriptor.encode()
    assert len(encoded) <= desc_size * 512
    data[desc_offset * 512 : (desc_offset + desc_size) * 512] = encoded.ljust(
        desc_size * 512, b"\0"
    )
    if capacity is not None:
        struct.pack_into("<Q", data, 12, capacity)
    image.write_bytes(data)
    return image


@pytest.mark.parametrize(
    ("create_type", "extents", "capacity", "words"),
    [
        ("monolithicFlat", 'RW 2048 FLAT "/etc/passwd" 0', 0, "capacity of 0"),
        ("monolithicSparse", 'RW 2176 SPARSE "/etc/passwd"', None, "/etc/passwd"),
        ("monolithicSparse", 'RW 2176 SPARSE "../../x.vmdk"', None, "not this file"),
        ("monolithicSparse", 'RW 2176 FLAT "other.raw" 0', None, "not this file"),
        ("monolithicSparse", 'RW 2176 SPARSE "a.vmdk"\nRW 2176 SPARSE "b.vmdk"', None, "2 extents"),
        ("vmfs", 'RW 2176 SPARSE "bad.vmdk"', None, "createType"),
        ("twoGbMaxExtentSparse", 'RW 2176 SPARSE "bad.vmdk"', None, "createType"),
        (
            'monolithicSparse"\nparentFileNameHint="/etc/passwd',
            'RW 2176 SPARSE "bad.vmdk"',
            None,
            "parent",
        ),
        ("monolithicSparse", 'RW 2176 SPARSE "bad.vmdk"\nsomething odd', None, "unknown"),
    ],
)
def test_hostile_sparse_vmdk_refused(
    tmp_path: Path, out: Path, create_type: str, extents: str, capacity: int | None, words: str
) -> None:
    text = DESCRIPTOR.format(create_type=create_type, extents=extents)
    bad = sparse_vmdk(tmp_path, text, capacity)
    assert fmt_of(bad) == "vmdk"
    assert_refused(bad, "vmdk", out / "disk.raw", words)


def test_sparse_vmdk_with_its_own_extent_accepted(tmp_path: Path, out: Path) -> None:
    text = DESCRIPTOR.format(create_type="monolithicSparse", extents='RW 2176 SPARSE "up.vmdk"')
    image = sparse_vmdk(tmp_path, text)
    convert_to_raw(image, "vmdk", out / "disk.raw")
    assert (out / "disk.raw").read_bytes() == (tmp_path / "small.raw").read_bytes()


# --- limits and failures -------------------------------------------------------------------


def test_tiny_address_space_fails_cleanly(tmp_path: Path, out: Path) -> None:
    sparse_raw(tmp_path / "original.raw")
    qemu_img("convert", "-f", "raw", "-O", "qcow2", tmp_path / "original.raw", tmp_path / "a")
    with pytest.raises(InvalidRequest, match=r"^qemu-img could not"):
        convert_to_raw(
            tmp_path / "a", "qcow2", out / "disk.raw", limits=Limits(address_space=16 << 20)
        )
    assert not (out / "disk.raw").exists()


def fake_qemu_img(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    script = tmp_path / "fake-qemu-img"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setattr(convert, "QEMU_IMG", str(script))


def test_timeout_kills_qemu_img(tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.raw").write_bytes(b"x" * 4096)
    fake_qemu_img(tmp_path, monkeypatch, f"echo $$ > {tmp_path / 'pid'}\nexec sleep 60")
    with pytest.raises(InvalidRequest, match=r"longer than 0\.5 s"):
        convert_to_raw(tmp_path / "a.raw", "raw", out / "disk.raw", limits=Limits(timeout=0.5))
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text()), 0)
    assert not (out / "disk.raw").exists()


def test_cancel_kills_qemu_img(tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A DELETE of the image while it converts: qemu-img is killed, nothing is left.
    (tmp_path / "a.raw").write_bytes(b"x" * 4096)
    fake_qemu_img(tmp_path, monkeypatch, f"echo $$ > {tmp_path / 'pid'}\nexec sleep 60")
    asked = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 1  # not at the first look, at the second

    with pytest.raises(Cancelled):
        convert_to_raw(tmp_path / "a.raw", "raw", out / "disk.raw", cancelled=cancelled)
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text()), 0)
    assert not (out / "disk.raw").exists()


def test_virtual_size_over_the_cap_is_refused_before_converting(tmp_path: Path, out: Path) -> None:
    # A few hundred KB of qcow2 that says 8 TiB: refused before qemu-img writes a byte.
    src = tmp_path / "huge.qcow2"
    qemu_img("create", "-f", "qcow2", src, "8T")
    assert src.stat().st_size < 1 << 20
    with pytest.raises(TooLarge, match=r"virtual size \(8796093022208 bytes\) is over"):
        convert_to_raw(src, "qcow2", out / "disk.raw", limits=Limits(max_virtual_size=1 << 40))
    assert not (out / "disk.raw").exists()
    qemu_img("create", "-f", "qcow2", src, "1M")  # within the cap: converted
    convert_to_raw(src, "qcow2", out / "disk.raw", limits=Limits(max_virtual_size=1 << 40))
    assert (out / "disk.raw").stat().st_size == 1 << 20


def test_disk_full_is_storage_full(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.raw").write_bytes(b"x" * 4096)
    message = "qemu-img: error while writing at byte 0: No space left on device"
    fake_qemu_img(tmp_path, monkeypatch, f'echo "{message}" >&2\nexit 1')
    with pytest.raises(StorageFull):
        convert_to_raw(tmp_path / "a.raw", "raw", out / "disk.raw")
    assert not (out / "disk.raw").exists()


def test_qemu_img_error_names_its_last_line(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.raw").write_bytes(b"x" * 4096)
    fake_qemu_img(
        tmp_path, monkeypatch, 'echo "noise" >&2\necho "qemu-img: $8: broken" >&2\nexit 1'
    )
    with pytest.raises(
        InvalidRequest, match=r"could not convert the image: qemu-img: a.raw: broken$"
    ):
        convert_to_raw(tmp_path / "a.raw", "raw", out / "disk.raw")


def test_missing_qemu_img_is_not_the_clients_fault(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.raw").write_bytes(b"x" * 4096)
    monkeypatch.setattr(convert, "QEMU_IMG", str(tmp_path / "no-such-qemu-img"))
    with pytest.raises(FerryError) as caught:
        convert_to_raw(tmp_path / "a.raw", "raw", out / "disk.raw")
    assert not isinstance(caught.value, InvalidRequest)


def test_iso_is_not_converted(tmp_path: Path, out: Path) -> None:
    (tmp_path / "a.iso").write_bytes(b"\0" * 40000)
    check_safe(tmp_path / "a.iso", "iso")
    with pytest.raises(InvalidRequest, match="iso"):
        convert_to_raw(tmp_path / "a.iso", "iso", out / "disk.raw")
