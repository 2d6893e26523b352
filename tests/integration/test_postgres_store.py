"""The same schema and control plane on a real PostgreSQL server (started by `scripts/start-test-postgres.sh`).

`OPTIO_TEST_POSTGRES_URL` points at the server; each test gets a fresh database. Without the variable the
tests skip locally and fail in CI, which always starts the server.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from optio.config import Settings
from optio.server import build, start
from optio.services import jobs as job_service
from optio.store import queue, runs
from optio.store.db import Database, DatabaseUnavailable
from optio.store.disk_full import is_disk_full
from optio.store.models import Job, JobRun


def test_migrations_and_a_job_run_on_postgres(pg_url: str, tmp_path: Path) -> None:
    optio = build(Settings(data_dir=tmp_path, database_url=pg_url, auth="disabled"))
    try:
        assert optio.db.dialect == "postgresql"
        start(optio)
        job = job_service.create_job(optio.db, 1, {"name": "pg", "prompt_template": "hi {{WHO}}",
                                                   "agent_type": "script",
                                                   "agent_config": {"command": 'cat "$OPTIO_PROMPT_FILE"'}})
        run = job_service.start_run(optio.db, 1, job.id, {"WHO": "postgres"})
        deadline = time.monotonic() + 30
        state = "queued"
        while time.monotonic() < deadline:
            with optio.db.read() as session:
                state = session.get(JobRun, run.id).state
            if state in ("completed", "failed"):
                break
            time.sleep(0.1)
        assert state == "completed"
        with optio.db.read() as session:
            events = [e.event for e in runs.list_events(session, "job_run", run.id, 1)]
        assert events[0] == "created" and events[-1] == "completed"
    finally:
        optio.stop()
        optio.db.dispose()


def test_queue_dedup_and_skip_locked_claims(pg_url: str, tmp_path: Path) -> None:
    optio = build(Settings(data_dir=tmp_path, database_url=pg_url, auth="disabled"))
    db = optio.db
    try:
        with db.write() as s:
            for run_id in range(1, 41):
                queue.enqueue(s, "job_run", run_id, 1)
            queue.enqueue(s, "job_run", 1, 1)  # a duplicate bumps the generation, not the row count
        with db.read() as s:
            assert queue.depth(s) == 40
        claimed: list[int] = []
        lock = threading.Lock()

        def worker(name: str) -> None:
            while True:
                with db.write() as s:
                    items = queue.claim(s, name, lease_s=60, limit=3)
                if not items:
                    return
                with lock:
                    claimed.extend(i.run_id for i in items)
                with db.write() as s:
                    queue.ack(s, items)

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(claimed) == list(range(1, 41))
        with db.read() as s:
            assert queue.depth(s) == 0
    finally:
        optio.stop()
        db.dispose()


def test_cas_update_rejects_stale_version(pg_url: str, tmp_path: Path) -> None:
    optio = build(Settings(data_dir=tmp_path, database_url=pg_url, auth="disabled"))
    db = optio.db
    try:
        with db.write() as s:
            job = Job(workspace_id=1, name="cas", prompt_template="x", agent_type="script",
                      agent_config={"command": "true"})
            s.add(job)
            s.flush()
            run = JobRun(workspace_id=1, job_id=job.id, state="queued", prompt="x")
            s.add(run)
            s.flush()
            run_id = run.id
        with db.write() as s:
            assert runs.cas_update(s, "job_run", run_id, 1, {"state": "running"})
        with db.write() as s:
            assert not runs.cas_update(s, "job_run", run_id, 1, {"state": "cancelled"})
        with db.read() as s:
            row = s.get(JobRun, run_id)
            assert (row.state, row.version) == ("running", 2)
    finally:
        optio.stop()
        db.dispose()


def test_disk_full_from_the_server_is_not_reported_as_an_outage(pg_url: str) -> None:
    """The server's own disk_full error (SQLSTATE 53100) reaches the caller as itself, for the disk-full path."""
    db = Database(pg_url)
    raise_full = text("DO $$ BEGIN RAISE EXCEPTION 'kein Speicherplatz mehr' USING ERRCODE = 'disk_full'; END $$")
    raise_busy = text("DO $$ BEGIN RAISE EXCEPTION 'too many clients' USING ERRCODE = 'too_many_connections'; "
                      "END $$")
    try:
        with pytest.raises(OperationalError) as caught, db.write() as s:
            s.execute(raise_full)
        assert not isinstance(caught.value, DatabaseUnavailable)
        assert is_disk_full(caught.value)
        with pytest.raises(DatabaseUnavailable), db.write() as s:
            s.execute(raise_busy)
    finally:
        db.dispose()
