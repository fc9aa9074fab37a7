"""Content-addressed, write-once files: data chunks and manifest segments.

A file's name is the blake3 hex digest of its content, under a 256-way fan-out
(``chunks/ab/ab12...``). Identical content is stored once per cluster; a file is never
changed after its rename, so ``check`` only has to compare each name with its hash.
A data chunk holds one object's bytes with trailing zeros stripped, written sparse.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from ferry.block.embedded.disk import TMP_MARK, Disk
from ferry.permissions import make_dir

FANOUT = [f"{i:02x}" for i in range(256)]


def digest(data: bytes | memoryview) -> str:
    return blake3.blake3(data).hexdigest()


@dataclass
class Pending:
    """What one operation has stored but not committed yet."""

    dirs: set[Path] = field(default_factory=set)  # to fsync before the commit
    # Files this operation made (not those it found): what a failure may have to remove.
    created: set[Path] = field(default_factory=set)


class ContentStore:
    """Write-once files named by their hash, under one directory."""

    def __init__(self, root: Path, disk: Disk, *, sparse: bool) -> None:
        self.root = root
        self.disk = disk
        self.sparse = sparse

    def create_dirs(self) -> None:
        make_dir(self.root)
        for sub in FANOUT:
            make_dir(self.root / sub)

    def path(self, cid: str) -> Path:
        return self.root / cid[:2] / cid

    def put(self, data: bytes, pending: Pending) -> str:
        """Store ``data`` (once) and return its id, noting in ``pending`` what to fsync."""
        cid = digest(data)
        path = self.path(cid)
        if not path.exists():
            self.disk.write_new(path, data, sparse=self.sparse)
            pending.created.add(path)
        # Even an existing file's directory is fsynced: its rename may not be durable yet.
        pending.dirs.add(path.parent)
        return cid

    def get(self, cid: str) -> bytes:
        with open(self.path(cid), "rb") as f:
            return f.read()

    def pread(self, cid: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``: fewer where the stripped content ends."""
        fd = os.open(self.path(cid), os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def ids(self) -> Iterator[str]:
        for sub in FANOUT:
            for entry in os.scandir(self.root / sub):
                if TMP_MARK not in entry.name:
                    yield entry.name

    def temp_files(self) -> Iterator[Path]:
        for sub in FANOUT:
            for entry in os.scandir(self.root / sub):
                if TMP_MARK in entry.name:
                    yield Path(entry.path)

    def allocated(self, cid: str) -> int:
        """Bytes the file really takes on disk (holes excluded)."""
        return self.path(cid).stat().st_blocks * 512
