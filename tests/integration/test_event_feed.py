"""The event feed's cursor never moves past a hole a transaction still committing may fill, nor stalls on old ones."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from optio.services import events
from optio.store import migrate, workspaces
from optio.store.db import Database
from optio.store.models import RunEvent, Workspace
from optio.store.types import utcnow


def _event(db: Database, event_id: int, ws: int, *, age_s: float = 0.0) -> None:
    with db.write() as session:
        session.execute(insert(RunEvent).values(
            id=event_id, workspace_id=ws, run_kind="job_run", run_id=1, event="transition", from_state="queued",
            to_state="running", reason="", created_at=utcnow() - timedelta(seconds=age_s)))


def test_holes_hold_the_cursor_until_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(f"sqlite:///{tmp_path / 'optio.db'}")
    migrate.upgrade(db)
    with db.write() as session:
        ws = workspaces.ensure_default(session).id
    feed = events.EventFeed(db, ws, 0)
    _event(db, 1, ws)
    _event(db, 2, ws)
    _event(db, 4, ws)  # 3 is a transaction still in flight
    assert [e.id for e in feed.poll()] == [1, 2]
    assert feed.poll() == []  # still waiting on 3
    _event(db, 3, ws)
    assert [e.id for e in feed.poll()] == [3, 4]
    # A hole nobody fills (a rolled-back transaction) is passed after HOLE_WAIT_S.
    monkeypatch.setattr(events, "HOLE_WAIT_S", 0.2)
    _event(db, 6, ws)
    assert feed.poll() == []
    time.sleep(0.3)
    assert [e.id for e in feed.poll()] == [6]
    # A replay over old history does not stall on old holes (the event after the hole is old).
    _event(db, 9, ws, age_s=60)
    _event(db, 20, ws, age_s=60)
    fresh = events.EventFeed(db, ws, 6)
    assert [e.id for e in fresh.poll()] == [9, 20]
    # Another workspace's events move the cursor but are never returned.
    with db.write() as session:
        other = Workspace(slug="other", name="Other")
        session.add(other)
        session.flush()
        other_id = other.id
    _event(db, 21, other_id)
    _event(db, 22, ws)
    assert [e.id for e in fresh.poll()] == [22]
    assert fresh.after == 22
