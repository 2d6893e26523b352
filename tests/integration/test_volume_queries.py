"""The queries behind task lists at volume read off an index: no full scan, no sort of the rows of a workspace.

Runs the store's own list, filter, feed and open-a-task reads on a real SQLite file with thousands of runs,
captures the SQL they send and asks SQLite for each statement's plan. Also: the migrations build exactly the
schema the models declare (indexes included), so the two never drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event
from tests.support.volume import insert_mixed_runs, insert_tasks, scopes

from optio.store import dashboard, migrate, repo_tasks_read, task_feed
from optio.store import jobs as job_store
from optio.store.db import Database
from optio.store.models import Base

RUN_TABLES = ("repo_tasks", "job_runs", "review_runs")


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'v.db'}")
    migrate.upgrade(database, new_from_models=False)  # the indexes as an upgraded install has them
    return database


def test_the_migrations_build_the_schema_the_models_declare(db: Database) -> None:
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def plans_of(db: Database, read: Any) -> list[tuple[str, list[str]]]:
    captured: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, params: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", grab)
    try:
        with db.read() as session:
            read(session)
    finally:
        event.remove(db.engine, "before_cursor_execute", grab)
    raw = db.engine.raw_connection()
    try:
        return [(" ".join(sql.split()), [row[3] for row in raw.cursor().execute("EXPLAIN QUERY PLAN " + sql, params)])
                for sql, params in captured]
    finally:
        raw.close()


def test_lists_filters_feed_and_opening_a_task_use_indexes_and_never_sort_a_workspace(db: Database) -> None:
    sc = scopes(db)
    insert_mixed_runs(db, sc, 3000)
    insert_tasks(db, sc, 3000, first=10_000)
    ws = sc[1].workspace_id

    def reads(s: Any) -> None:
        page = repo_tasks_read.list_tasks(s, ws, repo_id=None, state=None, limit=51, before=None)
        repo_tasks_read.list_tasks(s, ws, repo_id=None, state=None, limit=51, before=page[-1].id)
        repo_tasks_read.list_tasks(s, ws, repo_id=None, state="running", limit=51, before=None)
        repo_tasks_read.list_tasks(s, ws, repo_id=None, state="completed", limit=51, before=page[-1].id)
        repo_tasks_read.list_tasks(s, ws, repo_id=sc[1].repo_id, state=None, limit=51, before=page[-1].id)
        repo_tasks_read.views_of(s, page)
        repo_tasks_read.view_of(s, repo_tasks_read.get_task(s, ws, page[3].id))
        for ranks in ((0, 1), (2,)):
            for state in (None, "running"):
                rows = task_feed.newest(s, ws, ranks=ranks, state=state, position=None, limit=51)
                last = rows[-1]
                task_feed.newest(s, ws, ranks=ranks, state=state, position=(last.created_at, last.rank, last.id),
                                 limit=51)
        job_store.list_runs(s, ws, job=None, state=None, limit=51, before=None)
        job_store.list_runs(s, ws, job=None, state="queued", limit=51, before=10_000)
        dashboard.state_counts(s, ws)

    plans = plans_of(db, reads)
    assert len(plans) > 20
    for sql, plan in plans:
        assert not any(step.startswith("SCAN") for step in plan), (sql, plan)
        table = sql.split(" FROM ", 1)[1].split()[0]
        if table in RUN_TABLES:  # a page of runs: read in index order, never sorted
            assert not any("TEMP B-TREE" in step for step in plan), (sql, plan)
            assert any("INDEX" in step or "PRIMARY KEY" in step for step in plan), (sql, plan)
