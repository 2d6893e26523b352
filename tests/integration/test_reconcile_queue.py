"""The durable reconcile queue on a real SQLite file: dedup, no lost enqueue, leases, delays."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from optio.control.worker import release
from optio.store import migrate, queue
from optio.store.db import Database
from optio.store.types import utcnow


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'q.db'}")
    migrate.upgrade(database)
    return database


def test_enqueue_is_deduplicated_by_run(db: Database) -> None:
    with db.write() as s:
        queue.enqueue(s, "job_run", 1, 1)
        queue.enqueue(s, "job_run", 1, 1)
        queue.enqueue(s, "repo_task", 1, 1)
    with db.read() as s:
        assert queue.depth(s) == 2


def test_enqueue_while_processing_is_not_lost(db: Database) -> None:
    with db.write() as s:
        queue.enqueue(s, "job_run", 7, 1)
    with db.write() as s:
        [item] = queue.claim(s, "w", lease_s=60)
    with db.write() as s:
        queue.enqueue(s, "job_run", 7, 1, reason="changed meanwhile")
    with db.write() as s:
        queue.ack(s, [item])
    with db.write() as s:
        again = queue.claim(s, "w", lease_s=60)
    assert [i.run_id for i in again] == [7]
    with db.write() as s:
        queue.ack(s, again)
    with db.read() as s:
        assert queue.depth(s) == 0


def test_claimed_item_is_invisible_until_its_lease_ends(db: Database) -> None:
    with db.write() as s:
        queue.enqueue(s, "job_run", 3, 1)
    now = utcnow()
    with db.write() as s:
        assert len(queue.claim(s, "a", lease_s=30, now=now)) == 1
    with db.write() as s:
        assert queue.claim(s, "b", lease_s=30, now=now + timedelta(seconds=10)) == []
    with db.write() as s:  # the first worker died: after the lease, another takes it
        assert [i.run_id for i in queue.claim(s, "b", lease_s=30, now=now + timedelta(seconds=31))] == [3]


def test_delay_is_respected_and_earlier_enqueue_wins(db: Database) -> None:
    now = utcnow()
    with db.write() as s:
        queue.enqueue(s, "job_run", 5, 1, delay_s=60, now=now)
    with db.write() as s:
        assert queue.claim(s, "w", lease_s=30, now=now) == []
    with db.read() as s:
        wait = queue.next_ready_in(s, now=now)
    assert wait is not None and 59 <= wait <= 60
    with db.write() as s:
        queue.enqueue(s, "job_run", 5, 1, delay_s=0, now=now)
    with db.write() as s:
        assert [i.run_id for i in queue.claim(s, "w", lease_s=30, now=now)] == [5]


def test_a_first_in_line_enqueue_is_claimed_before_the_items_that_came_due_before_it(db: Database) -> None:
    now = utcnow()
    with db.write() as s:
        for run_id in (1, 2, 3):
            queue.enqueue(s, "repo_task", run_id, 1, now=now - timedelta(seconds=1))
        queue.enqueue(s, "repo_task", 4, 1, now=now, first=True)
        queue.enqueue(s, "repo_task", 2, 1, now=now, first=True)  # an item already waiting moves up too
    with db.write() as s:
        claimed = queue.claim(s, "w", lease_s=60, limit=4, now=now)
    assert {i.run_id for i in claimed[:2]} == {2, 4}
    assert [i.run_id for i in claimed[2:]] == [1, 3]


def test_batch_ack_deletes_done_items_and_releases_requeued_ones(db: Database) -> None:
    with db.write() as s:
        for run_id in (1, 2, 3):
            queue.enqueue(s, "job_run", run_id, 1)
    with db.write() as s:
        items = queue.claim(s, "w", lease_s=60, limit=3)
    with db.write() as s:
        queue.enqueue(s, "job_run", 2, 1)
    with db.write() as s:
        queue.ack(s, items)
    with db.write() as s:
        assert [i.run_id for i in queue.claim(s, "w", lease_s=60, limit=3)] == [2]


def test_items_a_worker_failed_on_are_released_not_kept_claimed(db: Database) -> None:
    # A worker that raised mid-batch never acks; its replica's claims loop would extend the claim for ever.
    with db.write() as s:
        queue.enqueue(s, "repo_task", 5, 1)
    now = utcnow()
    with db.write() as s:
        items = queue.claim(s, "replica-0", lease_s=60, now=now)
    with db.write() as s:
        assert queue.extend_claims(s, "replica-", lease_s=60, now=now + timedelta(seconds=50)) == 1
    release(SimpleNamespace(db=db), items)  # type: ignore[arg-type]  # it only writes through ctx.db
    with db.write() as s:
        assert queue.extend_claims(s, "replica-", lease_s=60) == 0
        again = queue.claim(s, "replica-1", lease_s=60, now=utcnow() + timedelta(seconds=2))
    assert [i.run_id for i in again] == [5]
