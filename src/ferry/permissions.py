"""File modes of what ferry keeps: private to the user ferry runs as.

Data directories are 0700; keys, keyrings, chunks, headers and the SQLite catalogue are 0600.
Modes are set where a file or directory is made (``os.open``/``mkdir`` with a mode), never
left to the umask: ferry is also used as a library, by processes with any umask.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600

log = logging.getLogger(__name__)


def make_dir(path: Path, *, parents: bool = False) -> None:
    """Create ``path`` (and, with ``parents``, its missing ancestors) with mode 0700.

    Directories that already exist keep their mode: they may be shared ones like ``/tmp``.
    """
    if path.is_dir():
        return
    if parents and not path.parent.is_dir():
        make_dir(path.parent, parents=True)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    os.chmod(path, DIR_MODE)  # the umask may have taken the owner's bits too


def write_private(path: Path, text: str) -> None:
    """Write ``path`` with mode 0600, also when it existed with another mode (keys, keyrings,
    topologies that hold keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # O_CREAT leaves an existing file's mode as it was
    with os.fdopen(fd, "w") as f:
        f.write(text)


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (then tighten it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    tighten(path, FILE_MODE)


def tighten(path: Path, mode: int) -> bool:
    """Take from ``path`` every permission bit that ``mode`` lacks; True if it changed.

    For files and directories an older ferry made with looser modes. A file another user
    owns is left alone (with a warning): changing it is that user's call.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    current = stat.S_IMODE(st.st_mode)
    if not current & ~mode:
        return False
    try:
        os.chmod(path, current & mode)
    except PermissionError:
        log.warning("%s has mode %o: others may read it; make it %o", path, current, mode)
        return False
    log.warning("%s had mode %o, readable by others: changed it to %o", path, current, mode)
    return True
