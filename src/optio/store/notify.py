"""Cross-process wake-ups on PostgreSQL: `NOTIFY` in the transaction that enqueues, `LISTEN` in every replica.

PostgreSQL delivers a notification only when the sending transaction commits (and folds identical ones of
one transaction into one), so a replica wakes exactly when there is committed work to claim, never before.
SQLite has one process: its in-process wake-up (the commit hook) is all it needs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = structlog.get_logger("optio.notify")

QUEUE_CHANNEL = "optio_reconcile"
_SENT = "optio_notify_sent"


def notify_in(session: Session, channel: str = QUEUE_CHANNEL) -> None:
    """Have the session's transaction wake every listener of `channel` when it commits (PostgreSQL only)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    # Once per session is enough: `Database.write` opens a session per transaction.
    sent: set[str] = session.info.setdefault(_SENT, set())
    if channel in sent:
        return
    session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})
    sent.add(channel)


def dsn_of(url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL (driver suffix dropped)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """A thread with its own connection that calls `on_wake` for each notification on `channel`.

    After a lost connection it reconnects and calls `on_wake` once anyway: a notification sent while it was
    away is gone, and the wake-up makes the caller look at the database instead.
    """

    def __init__(self, url: str, on_wake: Callable[[], None], channel: str = QUEUE_CHANNEL) -> None:
        self.dsn = dsn_of(url)
        self.on_wake = on_wake
        self.channel = channel
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="optio-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3.0)

    def _run(self) -> None:
        import psycopg

        delay = 0.5
        while not self._stop.is_set():
            conn: Any = None
            try:
                conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
                conn.execute(f'LISTEN "{self.channel}"')
                self.listening.set()
                self.on_wake()
                delay = 0.5
                while not self._stop.is_set():
                    for _ in conn.notifies(timeout=1.0, stop_after=1):
                        self.on_wake()
            except Exception as exc:
                self.listening.clear()
                if self._stop.is_set():
                    break
                log.warning("listen_failed", channel=self.channel, error=f"{type(exc).__name__}: {exc}",
                            retry_in_s=delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
