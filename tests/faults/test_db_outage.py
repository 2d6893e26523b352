"""SQLite held by another writer for 30 s while tasks and a job run: the server defers, fails nothing, goes on.

During the outage reads still answer (WAL readers are not blocked), a write is told "database busy" (503 with
Retry-After, never a 500), agents keep printing and end, and nothing is lost or failed for it afterwards.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs
from tests.faults.support_env import END, InFlight, sqlite_held, wait_for
from tests.support import sandbox
from tests.support.optio_server import OptioServer

from optio.config import Settings
from optio.server import build, start
from optio.services import jobs as job_service
from optio.store.models import JobRun

OUTAGE_S = 30.0


def test_sqlite_held_by_another_writer_for_30s(tmp_path: Path) -> None:
    # A short busy timeout: every write in the outage gives up many times over, not once at its very end.
    # The PR watcher reruns a CI whose result could not be stored every few seconds instead of every 30.
    server = OptioServer(tmp_path / "data", env={"OPTIO_DB_BUSY_TIMEOUT_S": "1", "OPTIO_WATCH_INTERVAL_S": "2"}).start()
    try:
        work = InFlight(server, tmp_path)
        db_file = server.data_dir / "optio.db"
        with sqlite_held(db_file, OUTAGE_S):
            listed = server.api("GET", "/api/repo-tasks")
            assert listed.status_code == 200, listed.text
            assert {t["id"] for t in listed.json()["items"]} >= set(work.tasks)
            assert server.api("GET", f"/api/repo-tasks/{work.tasks[0]}").status_code == 200
            refused = server.api("POST", "/api/repo-tasks", json={"repo": "outage", "title": "during",
                                                                  "prompt": "p", "agent_config": {"command": "true"}})
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "database_busy"
            assert "database" in refused.json()["error"]["message"]
            assert int(refused.headers["Retry-After"]) > 0
            work.let_agents_finish()
        assert server.proc is not None and server.proc.poll() is None, "the server died in the outage"

        work.assert_all_done()
        with sqlite3.connect(db_file) as db:
            for table in ("repo_tasks", "job_runs"):
                errors = db.execute(f"SELECT id, executor_error_count, executor_error FROM {table} "
                                    "WHERE executor_error_count > 0").fetchall()
                assert errors == [], (table, errors)
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        log = server.log()
        assert "database busy" in log  # the deferrals said why
    finally:
        server.stop()


def test_a_reconcile_cut_short_by_the_lock_is_deferred_not_counted_as_an_error(tmp_path: Path) -> None:
    """The lock is taken between a reconcile's snapshot and its writes (deterministically, from the snapshot).

    The executor's write gives up after the busy timeout; the item must be asked for again once the database
    is back (not left claimed, which this replica would keep extending forever), and no executor error may be
    recorded for it (five of those give a run up).
    """
    settings = Settings(data_dir=tmp_path / "data", auth="disabled", db_busy_timeout_s=0.2, workers=1,
                        sandbox=sandbox.server_mode())  # type: ignore[arg-type]
    optio = build(settings)
    handler = optio.ctx.handlers["job_run"]
    real_snapshot = handler.build_snapshot
    holders: list[Any] = []

    def snapshot_then_lock(*args: Any) -> Any:
        loaded = real_snapshot(*args)
        if not holders:  # the first reconcile of the run: its launch is what the lock cuts short
            holders.append(sqlite_held(settings.resolved_data_dir / "optio.db", 3.0))
            holders[0].__enter__()
        return loaded

    handler.build_snapshot = snapshot_then_lock  # type: ignore[method-assign]
    try:
        with capture_logs() as logged:
            start(optio)
            job = job_service.create_job(optio.db, 1, {"name": "quick", "prompt_template": "hi",
                                                       "agent_type": "script", "agent_config": {"command": "echo ran"}})
            run = job_service.start_run(optio.db, 1, job.id, {})

            def finished() -> JobRun | None:
                with optio.db.read() as session:
                    row = session.get(JobRun, run.id)
                    return row if row is not None and row.state in END else None

            final = wait_for(finished, "the job run to end", timeout=60)
        assert holders, "the lock was never taken"
        assert final.state == "completed", (final.state, final.error)
        assert (final.executor_error_count, final.executor_error) == (0, None)
        # Not even once on the way: an executor error counts towards giving the run up.
        assert [e for e in logged if e["event"] == "executor_error" or e.get("outcome") == "error"] == []
        assert any(e["event"] == "decision" and e.get("outcome") == "deferred" and "database busy" in e["reason"]
                   for e in logged)
    finally:
        for holder in holders:
            holder.__exit__(None, None, None)
        optio.stop()
        optio.db.dispose()
