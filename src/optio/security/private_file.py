"""Files only their owner may read, written so that a crash never leaves half of one behind.

Key files and the session secret are read back at every start: a file that is empty or cut short after a
power loss would lock everyone out (login fails, or every secret is unreadable). Each is therefore written
to a fresh 0600 sibling, flushed to disk, and moved into place in one step, and the directory entry is
synced too, so after a crash the path holds either the old content or the new, never something between.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def fsync_dir(directory: Path) -> None:
    """Make a rename or link in ``directory`` durable (best effort where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_temp(path: Path, data: bytes) -> Path:
    """``data`` in a new 0600 sibling of ``path``, flushed to disk; the caller moves or links it into place."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def replace(path: Path, data: bytes) -> None:
    """Atomically make ``path`` a 0600 file holding ``data`` (replacing whatever was there)."""
    tmp = write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def create(path: Path, data: bytes) -> bool:
    """Atomically create ``path`` as a 0600 file holding ``data``; False if it already existed (left as is)."""
    tmp = write_temp(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def open_private(path: Path) -> BinaryIO:
    """``path`` opened for writing (truncated) as a 0600 file, even if it existed with a wider mode.

    For raw process output, which holds values not yet redacted while it exists.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "wb")


# Files an Optio data dir holds at its top level (the database and its journals, keys, secrets, logs, locks).
_OWN_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal", ".keys", ".secret", ".log", ".lock")


def secure_data_dir(path: Path) -> None:
    """Make the data dir 0700 and strip group/other access from the files of Optio's it directly holds.

    New files are private through the server's umask (077); this covers a data dir made by an older Optio,
    whose database, WAL and key files were readable by everyone. The dir's own mode already keeps other
    users out of everything deeper. Only Optio's own kinds of file are touched, in case the data dir was
    pointed at a directory that holds other things too.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    for child in path.iterdir():
        with contextlib.suppress(OSError):
            mode = child.lstat().st_mode
            if stat.S_ISREG(mode) and mode & 0o077 and child.name.endswith(_OWN_SUFFIXES):
                os.chmod(child, stat.S_IMODE(mode) & ~0o077)
