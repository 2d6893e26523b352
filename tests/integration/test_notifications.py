"""The notification queue on a real SQLite file with a real receiver on 127.0.0.1: events queued with the
state change, retries doubling, a delivery given up after its attempts, and none queued for a rolled-back change."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from optio.security import crypto
from optio.security.ssrf import guarded_client
from optio.services import notifications as notify
from optio.store import migrate, runs, workspaces
from optio.store import notifications as store
from optio.store.db import Database
from optio.store.types import utcnow


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    seen: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", seen
    server.shutdown()


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'n.db'}")
    migrate.upgrade(database)
    with database.write() as s:
        workspaces.ensure_default(s)
    return database


def _event(db: Database, to_state: str, *, fail: bool = False) -> None:
    try:
        with db.write() as s:
            runs.record_event(s, workspace_id=1, kind="repo_task", run_id=7, event="transition",
                              from_state="running", to_state=to_state, reason="because")
            if fail:
                raise RuntimeError("the change rolls back")
    except RuntimeError:
        pass


def test_retries_double_and_a_delivery_is_given_up_after_its_attempts(
        db: Database, tmp_path: Path, receiver: tuple[str, list[bytes]]) -> None:
    url, seen = receiver
    keyring = crypto.load_keyring(tmp_path, None)
    hook, secret = notify.create(db, keyring, 1, {"url": url, "events": ["pr.opened"]}, allowlist=["127.0.0.1"])
    assert secret
    _event(db, "pr_opened")
    _event(db, "running")  # no event for this state
    _event(db, "needs_attention")  # an event this receiver did not ask for
    _event(db, "pr_opened", fail=True)  # rolled back: nothing queued
    with db.read() as s:
        [queued] = store.deliveries(s, 1, hook.id)
    assert queued.event == "pr.opened" and queued.payload["id"] == 7

    notifier = notify.Notifier(db, keyring, allowlist=["127.0.0.1"], backoff_s=10, max_attempts=3, timeout_s=5)
    now = utcnow()
    gaps = []
    with guarded_client(["127.0.0.1"], timeout=5) as client:
        for _ in range(3):
            assert notifier.deliver_due(client, now) == 1
            assert notifier.deliver_due(client, now) == 0  # not due again until its backoff passed
            with db.read() as s:
                [row] = store.deliveries(s, 1, hook.id)
            gaps.append((row.next_attempt_at - utcnow()).total_seconds())
            now = row.next_attempt_at + timedelta(seconds=1)
    with db.read() as s:
        [row] = store.deliveries(s, 1, hook.id)
    assert (row.state, row.attempts, row.last_status, row.last_error) == ("failed", 3, 500, "HTTP 500")
    assert len(seen) == 3
    assert 8 < gaps[0] <= 10 and 18 < gaps[1] <= 20  # 10 s, then 20 s


def test_an_internal_receiver_is_refused_unless_allowed(db: Database, tmp_path: Path) -> None:
    keyring = crypto.load_keyring(tmp_path, None)
    for url in ("http://127.0.0.1:9/x", "http://169.254.169.254/latest", "http://[::1]/x", "ftp://example.com/x"):
        with pytest.raises(notify.Invalid) as info:
            notify.create(db, keyring, 1, {"url": url}, allowlist=[])
        assert info.value.field == "url", url
