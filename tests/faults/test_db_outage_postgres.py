"""PostgreSQL stopped for 30 s and started again while tasks and a job run: the server defers, fails nothing.

The cluster is the test's own (the suite's shared one serves other tests in parallel): stopped with
`pg_ctl stop -m fast`, which ends every connection, so the pool must let go of dead connections and reconnect.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import create_engine, text
from tests.faults.support_env import InFlight, PrivatePostgres
from tests.support.optio_server import OptioServer

OUTAGE_S = 30.0


def test_postgres_stopped_for_30s_and_started(tmp_path: Path) -> None:
    pg = PrivatePostgres().init()
    # The PR watcher reruns a CI whose result could not be stored every few seconds instead of every 30.
    server = OptioServer(tmp_path / "data", env={"OPTIO_DATABASE_URL": pg.url, "OPTIO_WATCH_INTERVAL_S": "2"})
    try:
        server.start()
        work = InFlight(server, tmp_path)
        pg.stop()
        stopped = time.monotonic()
        listed = server.api("GET", "/api/repo-tasks")
        assert listed.status_code == 503, listed.text
        assert listed.json()["error"]["code"] == "database_busy"
        work.let_agents_finish()
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        assert server.proc is not None and server.proc.poll() is None, "the server died in the outage"
        pg.start()

        work.assert_all_done()
        assert server.api("GET", "/api/repo-tasks").status_code == 200
        engine = create_engine(pg.url)
        try:
            with engine.connect() as conn:
                for table in ("repo_tasks", "job_runs"):
                    errors = conn.execute(text(f"SELECT id, executor_error_count, executor_error FROM {table} "
                                               "WHERE executor_error_count > 0")).fetchall()
                    assert errors == [], (table, errors)
        finally:
            engine.dispose()
    finally:
        server.stop()
        pg.destroy()
