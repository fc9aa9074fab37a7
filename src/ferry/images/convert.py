"""Glance's ``image_conversion`` import step: an uploaded image to raw, with ``qemu-img``.

An uploaded image is hostile until proven otherwise. Several formats can name *other* files,
and ``qemu-img`` follows those names: converting such an image to raw would copy a file of
the host (``/etc/passwd``, a key, another tenant's disk) into the client's image. So before
``qemu-img`` reads anything, the header is parsed here, from the bytes, and these are refused:

qcow2
    a backing file (``backing_file_offset != 0``); an external data file (incompatible
    feature bit 2, ``data_file``); any incompatible feature bit qemu may know and we do not;
    the ``corrupt`` bit; encryption; a header version other than 2 or 3.
vmdk
    a text descriptor (``# Disk DescriptorFile``): it is nothing but names of other files.
    For a sparse file (``KDMV``) the embedded descriptor must say ``createType``
    monolithicSparse or streamOptimized, hold exactly one ``SPARSE`` extent with a bare
    file name (that extent is the file itself) and no ``parentFileNameHint`` (qemu's
    backing file for vmdk). A header capacity of 0 is refused: qemu then treats the
    embedded descriptor as a descriptor file and opens every extent it names.
vhd, vhdx, vdi
    converted: qemu's drivers for them open no other file.

Then ``qemu-img info`` (itself only run once the header passed) is cross-checked: a backing
file, a data file, or a vmdk extent other than this file is refused, so a gap in the parsing
above is caught by qemu's own reading of the image.

``qemu-img`` is always told the format (``-f``), never left to probe, gets absolute paths
(a name with ``:`` is not taken as a protocol), runs under ``RLIMIT_AS``/``RLIMIT_CPU`` and
a wall-clock timeout (a crafted image cannot exhaust the host), with stdin closed. Before
converting, ``qemu-img check`` refuses a corrupt image: a truncated qcow2 would otherwise
convert "fine", its lost clusters read as zeros. The raw output goes to a temporary name
beside ``dest``, is fsynced and renamed over ``dest``: after any failure no ``dest`` and no
temporary file is left.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferry.errors import Cancelled, FerryError, InvalidRequest, StorageFull, TooLarge
from ferry.images.formats import HEAD, inspect, is_vmdk_descriptor

QEMU_IMG = "qemu-img"
# Our format names to qemu's driver names; qemu-img is never given any other driver.
DRIVERS = {"raw": "raw", "qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc", "vhdx": "vhdx",
           "vdi": "vdi"}  # fmt: skip

_QCOW2_HEADER = struct.Struct(">4sIQIIQIIQQIIQ")  # version 2 header, 72 bytes
_QCOW2_V3 = struct.Struct(">QQQII")  # version 3: features, refcount order, header length
_QCOW2_FEATURES = {0: "dirty", 1: "corrupt", 2: "data_file", 3: "compression", 4: "extended_l2"}
_VMDK_HEADER = struct.Struct("<4sIIQQQQIQQQB4sH")  # SparseExtentHeader, from the magic on
_VMDK_TYPES = ("monolithicSparse", "streamOptimized")
_VMDK_PARENT_AT = 0x200  # qemu reads parentFileNameHint from here, whatever the header says
_VMDK_DESC_MAX = 1 << 20  # qemu reads at most this much descriptor
_VMDK_EXTENT = re.compile(r'(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)\s+"([^"]*)"(\s+\d+)?')
_VMDK_FIELD = re.compile(r"([A-Za-z][\w.]*)\s*=\s*(.*)")


@dataclass(frozen=True)
class Limits:
    """What one qemu-img run may use."""

    cpu_seconds: int = 300
    address_space: int = 1 << 30  # RLIMIT_AS, as Nova and Glance give ``qemu-img info``
    timeout: float = 600.0  # wall clock, seconds; the process is killed after it
    # The largest image qemu-img may write: its virtual size is checked before converting,
    # so an 8 TiB qcow2 of a few KB is refused up front (the site's image_size_cap).
    max_virtual_size: int = 1 << 40


def check_safe(path: Path, fmt: str, *, limits: Limits = Limits()) -> dict[str, Any] | None:
    """Refuse images that would make qemu-img read anything but this file; return qemu-img's
    report of it (None for raw and iso, which qemu-img is not asked about)."""
    if fmt in ("raw", "iso"):
        return None  # raw: qemu-img -f raw reads the bytes as data; iso is never converted
    # info() checks the header first: qemu-img reads nothing of an image refused there.
    report = info(path, fmt, limits=limits)
    _check_info(path, fmt, report)
    return report


def convert_to_raw(
    src: Path,
    fmt: str,
    dest: Path,
    *,
    limits: Limits = Limits(),
    cancelled: Callable[[], bool] = lambda: False,
) -> None:
    """``qemu-img convert -f fmt -O raw`` of ``src`` to ``dest``, sparse, after check_safe.

    The virtual size must be within ``limits.max_virtual_size``. ``cancelled`` is asked
    twice a second while qemu-img runs; once it says yes, qemu-img is killed (Cancelled).
    Write order: a temporary name in ``dest``'s directory, fsync, rename over ``dest``,
    fsync the directory. A failure at any step removes the temporary file.
    """
    if fmt not in DRIVERS:
        raise InvalidRequest(f"{fmt} images are not converted to raw")
    report = check_safe(src, fmt, limits=limits)
    if report is not None:
        virtual = report.get("virtual-size")
        if not isinstance(virtual, int) or virtual > limits.max_virtual_size:
            raise TooLarge(
                f"{fmt} image refused: its virtual size ({virtual} bytes) is over the "
                f"image size cap of {limits.max_virtual_size} bytes"
            )
        _check_consistent(src, fmt, limits)
    dest = Path(os.path.abspath(dest))
    with _storage_errors():
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # -S 4k: runs of zeros are not written, so the raw file keeps its holes.
        args = ["convert", "-f", DRIVERS[fmt], "-O", "raw", "-S", "4k", _abs(src), str(tmp)]
        _run(args, limits, "convert", {_abs(src): src.name, str(tmp): dest.name}, cancelled)
        with _storage_errors():
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def info(path: Path, fmt: str, *, limits: Limits = Limits()) -> dict[str, Any]:
    """``qemu-img info --output=json -f fmt``, once the header passed the checks above."""
    if fmt not in DRIVERS:
        raise InvalidRequest(f"qemu-img does not read {fmt} images")
    _check_header(path, fmt)
    args = ["info", "--output=json", "-f", DRIVERS[fmt], _abs(path)]
    out = _run(args, limits, "read", {_abs(path): path.name}).stdout
    try:
        data = json.loads(out)
    except ValueError as exc:
        raise InvalidRequest("qemu-img could not read the image: its report is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("qemu-img could not read the image: its report is not an object")
    return data


# --- checks on the bytes -------------------------------------------------------------------


def _check_header(path: Path, fmt: str) -> None:
    if fmt == "raw":
        return
    with path.open("rb") as f:
        head = f.read(HEAD)
    if fmt == "vmdk" and is_vmdk_descriptor(head):
        raise InvalidRequest(
            "vmdk image refused: it is a descriptor file, which only names other files"
        )
    found = inspect(head).format
    if found != fmt:
        raise InvalidRequest(f"{fmt} image refused: its data has no {fmt} header")
    if fmt == "qcow2":
        _check_qcow2(path, head)
    elif fmt == "vmdk":
        _check_vmdk(path, head)


def _check_qcow2(path: Path, head: bytes) -> None:
    if len(head) < _QCOW2_HEADER.size:
        raise InvalidRequest("qcow2 image refused: its header is truncated")
    (_, version, backing_offset, backing_size, _, _, crypt, *_) = _QCOW2_HEADER.unpack_from(head)
    if version not in (2, 3):
        raise InvalidRequest(f"qcow2 image refused: unknown header version {version}")
    if backing_offset:
        name = _read(path, backing_offset, min(backing_size, 1023))
        raise InvalidRequest(f"qcow2 image refused: it names a backing file ({_show(name)})")
    if crypt:
        raise InvalidRequest("qcow2 image refused: it is encrypted")
    if version == 2:
        return  # no feature bits in version 2
    if len(head) < _QCOW2_HEADER.size + _QCOW2_V3.size:
        raise InvalidRequest("qcow2 image refused: its header is truncated")
    incompatible = _QCOW2_V3.unpack_from(head, _QCOW2_HEADER.size)[0]
    if incompatible & (1 << 2):
        raise InvalidRequest("qcow2 image refused: its data is in an external data file")
    if incompatible & (1 << 1):
        raise InvalidRequest("qcow2 image refused: it is marked corrupt")
    unknown = incompatible & ~sum(1 << bit for bit in _QCOW2_FEATURES)
    if unknown:
        raise InvalidRequest(f"qcow2 image refused: unknown incompatible features {unknown:#x}")


def _check_vmdk(path: Path, head: bytes) -> None:
    if len(head) < _VMDK_HEADER.size:
        raise InvalidRequest("vmdk image refused: its header is truncated")
    _, _, _, capacity, _, desc_offset, desc_size, *_ = _VMDK_HEADER.unpack_from(head)
    if not desc_offset or not desc_size:
        raise InvalidRequest("vmdk image refused: it has no embedded descriptor")
    if not capacity:
        raise InvalidRequest("vmdk image refused: a capacity of 0 makes its descriptor name files")
    parent_area = _read(path, _VMDK_PARENT_AT, 20 * 512)
    if b"parentFileNameHint" in parent_area:
        raise InvalidRequest("vmdk image refused: it names a parent (backing) file")
    raw = _read(path, desc_offset * 512, min(desc_size * 512, _VMDK_DESC_MAX))
    try:
        text = raw.split(b"\0", 1)[0].decode("ascii")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("vmdk image refused: its descriptor is not ASCII text") from exc
    create_type, extents = _vmdk_descriptor(text)
    if create_type not in _VMDK_TYPES:
        raise InvalidRequest(
            f"vmdk image refused: createType {_show(create_type.encode())} is not "
            "monolithicSparse or streamOptimized"
        )
    if len(extents) != 1:
        raise InvalidRequest(f"vmdk image refused: {len(extents)} extents, not one")


def _vmdk_descriptor(text: str) -> tuple[str, list[str]]:
    """The createType and extent file names of a descriptor; refuses what it cannot read."""
    create_type = ""
    extents: list[str] = []
    for line in (raw.strip() for raw in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if m := _VMDK_EXTENT.fullmatch(line):
            kind, name = m.group(3), m.group(4)
            if kind != "SPARSE" or m.group(5) or not name or "/" in name or "\\" in name:
                shown = _show(line.encode())
                raise InvalidRequest(f"vmdk image refused: extent {shown} is not this file")
            extents.append(name)
        elif m := _VMDK_FIELD.fullmatch(line):
            if m.group(1) == "parentFileNameHint":
                raise InvalidRequest("vmdk image refused: it names a parent (backing) file")
            if m.group(1) == "createType":
                create_type = m.group(2).strip('"')
        else:
            raise InvalidRequest(
                f"vmdk image refused: unknown descriptor line {_show(line.encode())}"
            )
    return create_type, extents


def _check_info(path: Path, fmt: str, report: dict[str, Any]) -> None:
    """Cross-check qemu's own view: only this file may be read."""
    backing = report.get("backing-filename") or report.get("full-backing-filename")
    if backing:
        raise InvalidRequest(f"{fmt} image refused: it names a backing file ({backing})")
    specific = report.get("format-specific")
    data = specific.get("data") if isinstance(specific, dict) else None
    if not isinstance(data, dict):
        return
    if data.get("data-file"):
        raise InvalidRequest(
            f"{fmt} image refused: its data is in an external data file ({data['data-file']})"
        )
    if data.get("corrupt"):
        raise InvalidRequest(f"{fmt} image refused: it is marked corrupt")
    for extent in data.get("extents") or ():
        name = extent.get("filename") if isinstance(extent, dict) else None
        if name != _abs(path):
            raise InvalidRequest(f"{fmt} image refused: it reads another file ({name})")


def _check_consistent(path: Path, fmt: str, limits: Limits) -> None:
    """``qemu-img check``: a truncated image would convert anyway, its lost data as zeros."""
    args = ["check", "--output=json", "-f", DRIVERS[fmt], _abs(path)]
    # 0 clean, 2 corrupt, 3 only leaked clusters (harmless), 63 no check for this format
    proc = _run(args, limits, "check", {_abs(path): path.name}, ok=(0, 2, 3, 63))
    if proc.returncode == 2:
        try:
            count = json.loads(proc.stdout).get("corruptions", "some")
        except (ValueError, AttributeError):
            count = "some"
        raise InvalidRequest(f"{fmt} image refused: it is corrupt ({count} errors found)")


# --- running qemu-img ----------------------------------------------------------------------


def _run(
    args: list[str],
    limits: Limits,
    verb: str,
    names: dict[str, str],
    cancelled: Callable[[], bool] = lambda: False,
    ok: tuple[int, ...] = (0,),
) -> subprocess.CompletedProcess[bytes]:
    """Run qemu-img under ``limits``; InvalidRequest with its last words unless it exits ``ok``.

    ``names`` maps our paths in its messages to the names a client may see.
    """

    # prlimit(1) sets the limits in the child: preexec_fn is unsafe in a threaded server.
    prlimit = ["prlimit", f"--as={limits.address_space}", f"--cpu={limits.cpu_seconds}", "--"]
    failed = f"qemu-img could not {verb} the image"
    exe = shutil.which(QEMU_IMG)
    if exe is None:
        raise FerryError(f"{QEMU_IMG} is not installed (package qemu-utils)")
    try:
        proc = _wait(
            subprocess.Popen(
                [*prlimit, exe, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, "LC_ALL": "C"},  # English errors: ENOSPC is told by its text
            ),
            limits.timeout,
            cancelled,
        )
    except FileNotFoundError as exc:
        raise FerryError(f"{QEMU_IMG} is not installed (package qemu-utils)") from exc
    except subprocess.TimeoutExpired as exc:  # _wait has killed and reaped it
        raise InvalidRequest(f"{failed}: it took longer than {limits.timeout:g} s") from exc
    except OSError as exc:  # exec itself failed, e.g. ENOMEM under RLIMIT_AS
        raise InvalidRequest(f"{failed}: it could not start ({exc.strerror})") from exc
    stderr = proc.stderr.decode("utf-8", "replace")
    for long, short in names.items():
        stderr = stderr.replace(long, short)  # clients need not see our directories
    if "No space left on device" in stderr:
        raise StorageFull(f"{failed}: no space left on device")
    if proc.returncode in ok:
        return proc
    lines = [line for line in stderr.splitlines() if line.strip()]
    detail = lines[-1].strip()[:500] if lines else ""
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        detail = f"killed by {sig}" + (f" ({detail})" if detail else "")
    raise InvalidRequest(f"{failed}: {detail or f'exit status {proc.returncode}'}")


def _wait(
    proc: subprocess.Popen[bytes], timeout: float, cancelled: Callable[[], bool]
) -> subprocess.CompletedProcess[bytes]:
    """Collect a process's output; kill and reap it on timeout or once ``cancelled()``."""
    deadline = time.monotonic() + timeout
    with proc:
        try:
            while True:
                try:
                    out, err = proc.communicate(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        raise
                    if cancelled():
                        raise Cancelled("qemu-img was stopped: the import was cancelled") from None
        except BaseException:  # timed out, cancelled, or the caller's own failure
            proc.kill()
            proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# --- small helpers -------------------------------------------------------------------------


def _abs(path: Path) -> str:
    # Absolute: qemu would take "nbd:...", "json:{...}" in a relative name as a protocol.
    return os.path.abspath(path)


def _read(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(size)


def _show(name: bytes) -> str:
    """A name from the image, printable and short, for an error message."""
    text = name.split(b"\0", 1)[0].decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= 200 else text[:200] + "..."


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _storage_errors() -> Iterator[None]:
    """Translate ENOSPC/EDQUOT into StorageFull."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"no space left for the converted image: {exc.strerror}") from exc
        raise
