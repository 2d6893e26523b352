"""The resync sweep on a real SQLite file with thousands of runs of every kind, walked in small chunks.

Every non-terminal run not yet queued is enqueued exactly once, with its own workspace; terminal runs never are;
a run already queued keeps its time and reason; a sweep whose lease is lost stops between chunks.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from tests.support.volume import insert_mixed_runs, insert_tasks, scopes

from optio.config import Settings
from optio.control.worker import resync
from optio.server import Optio, build
from optio.store import queue
from optio.store import resync as resync_store
from optio.store.models import JobRun, ReconcileItem, RepoTask
from optio.store.runs import RUN_MODELS
from optio.store.types import utcnow


@pytest.fixture
def optio(tmp_path: Path) -> Optio:
    return build(Settings(data_dir=tmp_path / "data", resync_interval_s=3600))


def open_runs(optio: Optio) -> dict[tuple[str, int], int]:
    """(kind, id) -> workspace of every non-terminal run."""
    out = {}
    with optio.db.read() as s:
        for kind, handler in optio.ctx.handlers.items():
            model = RUN_MODELS[kind]
            query = select(model.id, model.workspace_id).where(model.state.not_in(handler.terminal))
            for run_id, ws in s.execute(query):
                out[(kind, run_id)] = ws
    return out


def queued(optio: Optio) -> list[ReconcileItem]:
    with optio.db.read() as s:
        return list(s.scalars(select(ReconcileItem)))


def test_a_sweep_enqueues_every_open_run_once_across_chunks_and_leaves_queued_ones_alone(optio: Optio) -> None:
    sc = scopes(optio.db)
    counts = insert_mixed_runs(optio.db, sc, 2600, terminal_too=400)
    insert_tasks(optio.db, sc, 300, ("completed", "failed", "cancelled"), first=5000)
    assert counts["agent"] > 0 and counts["pr_review"] > 0
    due = open_runs(optio)
    assert len(due) == 2600
    # Some open runs are queued already (one waits out a backoff), spread across the chunks to come.
    later = utcnow() + timedelta(hours=1)
    already = sorted(due)[::7]
    with optio.db.write() as s:
        for kind, run_id in already:
            queue.enqueue(s, kind, run_id, due[(kind, run_id)], delay_s=3600, reason="backing off")

    enqueued = resync(optio.ctx, chunk=333)

    assert enqueued == len(due) - len(already)
    items = queued(optio)
    assert Counter((i.kind, i.run_id) for i in items).most_common(1)[0][1] == 1
    assert {(i.kind, i.run_id) for i in items} == set(due)  # no terminal run, no open run missed
    assert all(i.workspace_id == due[(i.kind, i.run_id)] for i in items)
    before = {(k, r) for k, r in already}
    for item in items:
        if (item.kind, item.run_id) in before:
            assert (item.reason, item.generation) == ("backing off", 1)
            assert item.not_before >= later - timedelta(seconds=5)
        else:
            assert item.reason == "resync" and item.not_before <= utcnow()
    # A second sweep finds nothing left to do.
    assert resync(optio.ctx, chunk=333) == 0
    assert len(queued(optio)) == len(due)


def test_a_sweep_stops_between_chunks_once_its_lease_is_lost_and_the_next_one_finishes(optio: Optio) -> None:
    sc = scopes(optio.db, 1)
    insert_tasks(optio.db, sc, 1000, ("pending", "running"))

    def still_mine() -> bool:  # the lease is lost once two chunks are written
        return len(queued(optio)) < 600

    assert resync(optio.ctx, still_mine=still_mine, chunk=300) == 600
    assert resync(optio.ctx, chunk=300) == 400
    assert {i.run_id for i in queued(optio)} == set(range(1, 1001))


def test_a_run_that_ended_after_its_chunk_was_read_is_not_enqueued(optio: Optio) -> None:
    sc = scopes(optio.db, 1)
    insert_tasks(optio.db, sc, 10, ("running",))
    with optio.db.read() as s:
        ids = resync_store.due_ids(s, "repo_task", optio.ctx.handlers["repo_task"].terminal, after=0, limit=100)
    assert ids == list(range(1, 11))
    with optio.db.write() as s:  # meanwhile two runs finished
        s.execute(update(RepoTask).where(RepoTask.id.in_([3, 7])).values(state="completed"))
    with optio.db.write() as s:
        assert resync_store.enqueue_due(s, "repo_task", optio.ctx.handlers["repo_task"].terminal, ids,
                                        now=utcnow()) == 8
    assert sorted(i.run_id for i in queued(optio)) == [1, 2, 4, 5, 6, 8, 9, 10]
    # The job run with the same id as a queued task is a different run: kinds never collide.
    assert all(i.kind == "repo_task" for i in queued(optio))
    with optio.db.read() as s:
        assert s.scalar(select(JobRun.id).limit(1)) is None


def test_the_sweep_on_postgresql_enqueues_each_open_run_once(pg_url: str, tmp_path: Path) -> None:
    optio = build(Settings(data_dir=tmp_path / "data", database_url=pg_url, resync_interval_s=3600))
    try:
        sc = scopes(optio.db)
        insert_mixed_runs(optio.db, sc, 900, terminal_too=100)
        due = open_runs(optio)
        with optio.db.write() as s:
            queue.enqueue(s, "repo_task", min(r for k, r in due if k == "repo_task"), sc[0].workspace_id,
                          delay_s=3600, reason="backing off")
        assert resync(optio.ctx, chunk=128) == len(due) - 1
        items = queued(optio)
        assert sorted((i.kind, i.run_id) for i in items) == sorted(due)
        assert all(i.workspace_id == due[(i.kind, i.run_id)] for i in items)
        assert [i.reason for i in items].count("backing off") == 1
        assert resync(optio.ctx, chunk=128) == 0
    finally:
        optio.db.dispose()
