"""Whether a failure means the disk holding the data is full: the one storage failure that is not a bug.

SQLite says "database or disk is full" (SQLITE_FULL), PostgreSQL `disk_full` (SQLSTATE 53100), and a plain
file write ENOSPC or EDQUOT. Callers answer it as a temporary condition (an API 503, a deferred step), never
as a failed run or a 500.
"""

from __future__ import annotations

import errno
import sqlite3

from sqlalchemy.exc import DBAPIError

# The exception types a disk-full failure arrives as, for callers that register handlers by type.
STORAGE_ERRORS: tuple[type[Exception], ...] = (DBAPIError, sqlite3.Error, OSError)

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_TEXTS = ("database or disk is full", "no space left on device", "disk quota exceeded", "could not extend file")


def is_disk_full(exc: BaseException) -> bool:
    """True when `exc`, or an exception it wraps or was raised from, says the disk is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        if isinstance(current, sqlite3.Error) and getattr(current, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return True
        if getattr(current, "sqlstate", None) == "53100" or getattr(current, "pgcode", None) == "53100":
            return True
        # A database driver's message, or a tool's (git's "No space left on device") carried in the error text.
        if any(t in str(current).lower() for t in _FULL_TEXTS):
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False
