"""Engine and transactions.

SQLite runs in WAL mode and every write transaction starts with BEGIN IMMEDIATE: the worker pool and
the API write from many threads, and a deferred transaction that reads and then writes could fail with
SQLITE_BUSY mid-way instead of waiting its turn. Read-only work uses `read()`, which takes no write lock.

A database that cannot answer for now (SQLite held by another writer past the busy timeout, PostgreSQL down or
restarting) surfaces as `DatabaseUnavailable` from `read()` and `write()`: nothing is wrong with the work, so
callers defer it (the API answers 503) instead of counting it as a failure.

On SQLite the threads of one process also take turns for writing on a lock of their own before BEGIN IMMEDIATE:
SQLite's busy handler polls a held lock with sleeps of 1 to 100 ms, so under contention the lock sat free
while every waiter slept, and the loop's writes spent longer waiting than writing. A thread waiting on the
process's own lock wakes the moment the writer before it is done; other processes still meet the busy timeout.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from optio.store.disk_full import is_disk_full

READ_ONLY = "optio_read_only"
DEFAULT_BUSY_TIMEOUT_S = 30.0


class DatabaseUnavailable(Exception):
    """The database cannot answer now; the same work succeeds once it is back, so it is deferred, not failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def unavailable_reason(exc: BaseException) -> str | None:
    """Why `exc` means "the database is busy or unreachable for now", or None for any other database error.

    SQLite: another connection holds the lock past the busy timeout. PostgreSQL: the server is down, restarting
    or dropped the connection (psycopg reports all of these, and deadlocks, as OperationalError).

    A full disk is not one of them, though PostgreSQL's `disk_full` is an OperationalError too: it does not pass
    by itself, and its callers must say so (the API's 503 disk_full, the worker's disk-full deferral).
    """
    if isinstance(exc, DatabaseUnavailable):
        return exc.reason
    if not isinstance(exc, DBAPIError) or is_disk_full(exc):
        return None
    lines = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    message = lines[0] if lines else type(exc.orig).__name__
    if exc.connection_invalidated:
        return f"database connection lost: {message}"
    if type(exc.orig).__module__.startswith("sqlite3"):
        # Only a held lock: a full disk or a corrupt file is not "busy" and will not pass by itself.
        lowered = message.lower()
        return f"database busy: {message}" if "locked" in lowered or "busy" in lowered else None
    if isinstance(exc, (OperationalError, InterfaceError)):
        return f"database unavailable: {message}"
    return None


def _configure_sqlite(engine: Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let the "begin" hook below issue BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # On the driver's connection: every transaction begins here, and the engine's statement machinery
        # (contexts, events, a cursor result) cost more than the BEGIN itself. Its errors are wrapped as the
        # engine would have, so a locked database still reads as unavailable (`unavailable_reason`).
        begin = "BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
        try:
            conn.connection.driver_connection.execute(begin)
        except sqlite3.Error as exc:
            raise DBAPIError.instance(begin, (), exc, sqlite3.Error) from exc


def make_engine(url: str, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout_s},
                               pool_size=16, max_overflow=16)
        _configure_sqlite(engine, busy_timeout_s)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """Owns the engine and hands out short transactions.

    Hooks registered with `on_commit` run after a write transaction commits (used to wake the worker
    pool the moment a reconcile is enqueued, without waiting for a poll).
    """

    def __init__(self, url: str, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.url = url
        self.engine = make_engine(url, busy_timeout_s)
        self._read_engine = self.engine.execution_options(**{READ_ONLY: True})
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(self._read_engine, expire_on_commit=False)
        self._commit_hooks: list[Callable[[Session], None]] = []
        self._lock = threading.Lock()
        self._busy_timeout_s = busy_timeout_s
        # Re-entrant: a write opened inside another on the same thread meets SQLite's own lock, as before.
        self._writer = threading.RLock() if self.engine.dialect.name == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def on_commit(self, hook: Callable[[Session], None]) -> None:
        with self._lock:
            self._commit_hooks.append(hook)

    @contextmanager
    def _write_turn(self) -> Iterator[None]:
        if self._writer is None:
            yield
            return
        if not self._writer.acquire(timeout=self._busy_timeout_s):
            raise DatabaseUnavailable(f"database busy: another write in this process took over "
                                      f"{self._busy_timeout_s:g} s")
        try:
            yield
        finally:
            self._writer.release()

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self._write_turn():
            session = self._write()
            try:
                yield session
                session.commit()
            except DBAPIError as exc:
                reason = unavailable_reason(exc)
                if reason is None:
                    session.rollback()
                    raise
                with contextlib.suppress(Exception):  # the connection may be gone with the server
                    session.rollback()
                raise DatabaseUnavailable(reason) from exc
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
        for hook in list(self._commit_hooks):
            hook(session)

    @contextmanager
    def read(self) -> Iterator[Session]:
        session = self._read()
        try:
            yield session
        except DBAPIError as exc:
            reason = unavailable_reason(exc)
            if reason is None:
                raise
            raise DatabaseUnavailable(reason) from exc
        finally:
            session.close()  # ends the transaction without expiring loaded objects (rollback would)

    def dispose(self) -> None:
        self.engine.dispose()
