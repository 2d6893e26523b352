"""Reading a log on the driver's own statement gives what the ORM reads, on SQLite and on PostgreSQL: the same
lines in seq order, from `after` on and at most `limit`, each timestamp back as an aware UTC datetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.support.job_runs import running_job_runs

from optio.store import logs, migrate
from optio.store.db import Database
from optio.store.models import RunLog


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'optio.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    migrate.upgrade(database)
    return database


def test_read_gives_the_stored_lines_as_the_orm_does(db: Database) -> None:
    ws, [run_id, other] = running_job_runs(db, 2)
    start = datetime(2026, 12, 2, 11, 9, 23, 123456, tzinfo=UTC)
    for batch in range(3):  # a timestamp per batch, one with no microseconds
        when = start + timedelta(seconds=batch) - timedelta(microseconds=123456 if batch == 1 else 0)
        with db.write() as session:
            logs.append(session, workspace_id=ws, kind="job_run", run_id=run_id, attempt=batch + 1, now=when,
                        entries=[("stderr" if i % 3 == 0 else "stdout", f"line {batch}.{i} é \t \"q\"")
                                 for i in range(40)])
            logs.append(session, workspace_id=ws, kind="job_run", run_id=other, attempt=1, now=when,
                        entries=[("stdout", "another run's line")])
    with db.read() as session:
        orm = [(r.seq, r.attempt, r.stream, r.text, r.created_at) for r in session.scalars(
            select(RunLog).where(RunLog.run_kind == "job_run", RunLog.run_id == run_id).order_by(RunLog.seq))]
        assert len(orm) == 120 and {r[4] for r in orm} == {start, start + timedelta(seconds=1, microseconds=-123456),
                                                          start + timedelta(seconds=2)}
        assert [tuple(r) for r in logs.read(session, "job_run", run_id, ws, limit=1000)] == orm
        assert [tuple(r) for r in logs.read(session, "job_run", run_id, ws, after=35, limit=50)] == orm[35:85]
        assert logs.read(session, "job_run", run_id, ws, after=120) == []
        assert logs.read(session, "job_run", run_id, ws + 1) == []  # another workspace's view of the run: nothing
        assert all(r.created_at.tzinfo is not None and r.created_at.utcoffset() == timedelta(0)
                   for r in logs.read(session, "job_run", run_id, ws, limit=1000))
