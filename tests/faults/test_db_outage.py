"""SQLite held by another writer for 30 s while tasks and a job run: the server defers, fails nothing, goes on.

During the outage reads still answer (WAL readers are not blocked), a write is told "database busy" (503 with
Retry-After, never a 500), agents keep printing and end, and nothing is lost or failed for it afterwards.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.faults.support_env import InFlight, sqlite_held
from tests.support.optio_server import OptioServer

OUTAGE_S = 30.0


def test_sqlite_held_by_another_writer_for_30s(tmp_path: Path) -> None:
    # A short busy timeout: every write in the outage gives up many times over, not once at its very end.
    server = OptioServer(tmp_path / "data", env={"OPTIO_DB_BUSY_TIMEOUT_S": "1"}).start()
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
