"""Which failures mean a full disk: real SQLite (through SQLAlchemy too) and real file writes, not made-up errors."""

from __future__ import annotations

import errno
import sqlite3
import subprocess
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from optio.forge.gitcmd import GitError
from optio.store.db import unavailable_reason
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


def test_postgresql_disk_full_is_not_an_outage() -> None:
    # SQLSTATE 53100 is what says so: the message is in the server's language (lc_messages), here German.
    full = psycopg.errors.DiskFull("konnte Datei »base/16384/16385« nicht erweitern: "
                                   "Auf dem Gerät ist kein Speicherplatz mehr verfügbar")
    wrapped = OperationalError("INSERT INTO log_lines ...", {}, full)
    assert is_disk_full(wrapped)
    # Not "busy": deferring it as an outage would hide it behind database_busy and retry it as if it passes alone.
    assert unavailable_reason(wrapped) is None


def test_other_postgresql_resource_errors_stay_outages() -> None:
    # The rest of class 53 (memory, connection slots) passes once load drops: that is "busy", not "disk full".
    for error in (psycopg.errors.OutOfMemory("out of memory"), psycopg.errors.TooManyConnections("too many clients"),
                  psycopg.errors.InsufficientResources("insufficient resources")):
        wrapped = OperationalError("SELECT 1", {}, error)
        assert not is_disk_full(wrapped)
        assert unavailable_reason(wrapped) is not None
