"""Disk image formats, told from the bytes (never from the name the client gave)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ferry.errors import FormatMismatch

DISK_FORMATS = (None, "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso",
                "ploop")  # fmt: skip
# Formats whose header the inspector knows: data claiming one of these must carry it.
INSPECTED = ("qcow2", "vmdk", "vhdx", "vdi", "iso", "vhd")
HEAD = 64 * 1024  # enough of the start of a stream to tell every inspected format


@dataclass(frozen=True)
class Inspected:
    format: str  # "raw" when no known header is found
    virtual_size: int | None  # None: the stream's size (raw)


def inspect(head: bytes) -> Inspected:
    """The format of a stream starting with ``head``, and its virtual size when it says."""
    if head[:4] == b"QFI\xfb" and len(head) >= 32:
        return Inspected("qcow2", struct.unpack(">Q", head[24:32])[0])
    if head[:4] == b"KDMV" and len(head) >= 20:
        return Inspected("vmdk", struct.unpack("<Q", head[12:20])[0] * 512)
    if head[:8] == b"vhdxfile":
        return Inspected("vhdx", None)
    if head[64:68] == b"\x7f\x10\xda\xbe":
        return Inspected("vdi", struct.unpack("<Q", head[368:376])[0] if len(head) >= 376 else None)
    if head[:8] == b"conectix":
        return Inspected("vhd", None)
    if head[32769:32774] == b"CD001":
        return Inspected("iso", None)
    return Inspected("raw", None)


def check_declared(disk_format: str | None, found: Inspected) -> None:
    """FormatMismatch when the declared format has a header the data does not carry (Glance:
    415). Data with a known header declared as raw is accepted as raw, as Glance does."""
    if disk_format in INSPECTED and found.format != disk_format:
        raise FormatMismatch(
            f"Image disk_format {disk_format} does not match stream data {found.format}"
        )


def is_vmdk_descriptor(head: bytes) -> bool:
    """True for a VMDK text descriptor: data that only names other files (its extents)."""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"# Disk DescriptorFile")
