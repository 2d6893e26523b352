"""Which failures mean a full disk: real SQLite (through SQLAlchemy too) and real file writes, not made-up errors."""

from __future__ import annotations

import errno
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from optio.forge.gitcmd import GitError
from optio.store.disk_full import is_disk_full


def _fill_database(db: sqlite3.Connection) -> sqlite3.Error:
    db.execute("PRAGMA max_page_count = 8")  # SQLite's own size cap: the same SQLITE_FULL a full disk gives
    db.execute("CREATE TABLE t (x BLOB)")
    with pytest.raises(sqlite3.Error) as caught:
        for _ in range(100):
            db.execute("INSERT INTO t VALUES (zeroblob(4000))")
    return caught.value


def test_sqlite_full_is_disk_full(tmp_path: Path) -> None:
    assert is_disk_full(_fill_database(sqlite3.connect(tmp_path / "a.db")))


def test_sqlite_full_through_sqlalchemy_is_disk_full(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'b.db'}")
    with engine.connect() as conn:
        conn.execute(text("PRAGMA max_page_count = 8"))
        conn.execute(text("CREATE TABLE t (x BLOB)"))
        with pytest.raises(OperationalError) as caught:
            for _ in range(100):
                conn.execute(text("INSERT INTO t VALUES (zeroblob(4000))"))
    assert is_disk_full(caught.value)
    assert is_disk_full(RuntimeError("wrapped")) is False
    try:
        raise RuntimeError("while saving") from caught.value
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)


def test_enospc_and_git_saying_so_are_disk_full() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    proc = subprocess.run(["sh", "-c", "echo 'fatal: unable to write file: No space left on device' >&2; exit 128"],
                          capture_output=True, text=True)
    assert is_disk_full(GitError(["checkout"], proc.returncode, proc.stderr))


def test_other_database_errors_are_not_disk_full(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "c.db")
    with pytest.raises(sqlite3.Error) as caught:
        db.execute("SELECT * FROM missing")
    assert not is_disk_full(caught.value)
