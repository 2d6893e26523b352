"""`budget.exceeded` on a real SQLite file: queued in the transaction that stops the run (none when it rolls
back), only for receivers that want it, with a payload any run kind can fill."""

from __future__ import annotations

from pathlib import Path

import pytest

from optio.security import crypto
from optio.services import notifications as notify
from optio.store import migrate, workspaces
from optio.store import notifications as store
from optio.store.db import Database
from optio.store.types import utcnow


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'n.db'}")
    migrate.upgrade(database)
    with database.write() as s:
        workspaces.ensure_default(s)
    return database


def _stop(db: Database, *, kind: str, run_id: int, fail: bool = False) -> None:
    try:
        with db.write() as s:
            store.budget_exceeded(s, workspace_id=1, kind=kind, run_id=run_id, state="failed", spent_usd=1.25,
                                  budget_usd=1.0, reason="budget exceeded", now=utcnow())
            if fail:
                raise RuntimeError("the stop rolls back")
    except RuntimeError:
        pass


def test_budget_exceeded_is_queued_with_the_stop_and_only_for_receivers_that_want_it(db: Database,
                                                                                     tmp_path: Path) -> None:
    keyring = crypto.load_keyring(tmp_path, None)
    allow = ["127.0.0.1"]
    wants, _ = notify.create(db, keyring, 1, {"url": "http://127.0.0.1:9/b", "events": ["budget.exceeded"]},
                             allowlist=allow)
    everything, _ = notify.create(db, keyring, 1, {"url": "http://127.0.0.1:9/all"}, allowlist=allow)
    other, _ = notify.create(db, keyring, 1, {"url": "http://127.0.0.1:9/o", "events": ["job_run.finished"]},
                             allowlist=allow)
    _stop(db, kind="job_run", run_id=3)
    _stop(db, kind="persistent_agent", run_id=4)  # any run kind can report it
    _stop(db, kind="job_run", run_id=5, fail=True)
    with db.read() as s:
        got = {hook.id: [(d.event, d.payload["kind"], d.payload["id"]) for d in store.deliveries(s, 1, hook.id)]
               for hook in (wants, everything, other)}
        [first] = [d for d in store.deliveries(s, 1, wants.id) if d.payload["id"] == 3]
    expected = [("budget.exceeded", "persistent_agent", 4), ("budget.exceeded", "job_run", 3)]
    assert got == {wants.id: expected, everything.id: expected, other.id: []}
    assert (first.payload["spent_usd"], first.payload["budget_usd"], first.payload["state"]) == (1.25, 1.0, "failed")
    assert "budget.exceeded" in store.EVENT_NAMES
