"""Durable files: write a temporary name, fsync, rename, fsync the directory.

Every file the embedded cluster keeps goes through :class:`Disk`. Its ``step`` hook is called
before each rename and each directory fsync, so tests can kill the process between any two
durable steps and prove what a crash leaves behind.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from ferry.errors import BackendUnavailable, FerryError, Forbidden, IntegrityError, StorageFull
from ferry.permissions import FILE_MODE

TMP_MARK = ".tmp."
_BLOCK = 4096
_ZERO_BLOCK = bytes(_BLOCK)  # holes are made at the filesystem's block size

Step = Callable[[str], None]


def _no_step(label: str) -> None:
    del label


def translate(exc: OSError, what: str) -> FerryError:
    """Turn an OSError from the cluster directory into ferry's error tree."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"{what}: no space left on the cluster's disk")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return Forbidden(f"{what}: {exc.strerror}")
    if exc.errno == errno.ENOENT:  # pools and images are checked first: this is damage
        return IntegrityError(f"{what}: {exc.filename or 'a file'} is missing")
    return BackendUnavailable(f"{what}: {exc.strerror or exc}")


class Disk:
    """The one place that makes files durable."""

    def __init__(self, step: Step | None = None) -> None:
        self.step = step or _no_step

    def write_new(self, path: Path, data: bytes | memoryview, *, sparse: bool = False) -> None:
        """Atomically create or replace ``path``; the caller fsyncs the directory.

        With ``sparse``, all-zero 4 KiB blocks are left as holes, so zero data takes no space.
        """
        tmp = path.with_name(f"{path.name}{TMP_MARK}{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            try:
                if sparse:
                    _write_sparse(fd, memoryview(data))
                else:
                    _write_all(fd, memoryview(data))
                os.fsync(fd)
            finally:
                os.close(fd)
            self.step(f"rename {path.parent.name}/{path.name}")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def fsync_dirs(self, dirs: Iterable[Path]) -> None:
        for d in sorted(set(dirs)):
            self.step(f"fsync {d.name}/")
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def commit(self, path: Path, data: bytes) -> None:
        """Replace ``path`` and fsync its directory: an operation's one commit point."""
        self.write_new(path, data)
        self.fsync_dirs([path.parent])

    def remove(self, path: Path) -> None:
        """Unlink ``path`` durably (a commit point when ``path`` is a header)."""
        self.step(f"unlink {path.parent.name}/{path.name}")
        path.unlink()
        self.fsync_dirs([path.parent])


def _write_all(fd: int, data: memoryview) -> None:
    done = 0
    while done < len(data):
        done += os.write(fd, data[done:])


def _write_sparse(fd: int, data: memoryview) -> None:
    """Write only the non-zero 4 KiB blocks, then set the length: zeros become holes."""
    n = len(data)
    start = None
    for off in range(0, n, _BLOCK):
        block = data[off : off + _BLOCK]
        zero = block == _ZERO_BLOCK[: len(block)]
        if not zero and start is None:
            start = off
        elif zero and start is not None:
            _pwrite_all(fd, data[start:off], start)
            start = None
    if start is not None:
        _pwrite_all(fd, data[start:], start)
    os.ftruncate(fd, n)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)
