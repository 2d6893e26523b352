"""Reconcile throughput: the pure decision alone, and end to end through the queue + CAS executor.

Prints decisions per second for (a) `decide_job_run` over varied snapshots, (b) the full path — claim from
the durable queue, build a snapshot from SQLite, decide, apply, ack — draining 10,000 queued no-op runs, and
(c) a baseline measured in the same run: the same number of bare one-row SQLite write transactions, which is
the floor any durable per-item queue pays. Ratios are against (c) and (a).

usage: .venv/bin/python bench/reconcile.py [N]
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from optio.config import Settings
from optio.domain.reconcile.job import decide_job_run
from optio.domain.snapshot import Capacity, JobRunSnapshot, ProcessStatus, ProcessView, RunView
from optio.domain.states import RunKind
from optio.server import build
from optio.store import queue
from optio.store.models import Job, JobRun


def pure_rate(n: int) -> float:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    states = ["queued", "running", "completed", "failed"]
    snaps = []
    for i in range(1000):
        state = states[i % 4]
        proc = ProcessView(attempt=1, status=list(ProcessStatus)[i % 4], exit_code=i % 2,
                           last_output_at=now - timedelta(seconds=i))
        snaps.append(JobRunSnapshot(
            now=now, run=RunView(id=i, kind=RunKind.JOB_RUN, state=state, version=1, attempts=1),
            max_retries=2, process=proc, capacity=Capacity(running_global=i % 10, max_global=8),
        ))
    start = time.perf_counter()
    for i in range(n):
        decide_job_run(snaps[i % 1000])
    return n / (time.perf_counter() - start)


def sqlite_baseline(n: int, path: Path) -> float:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
    db.executemany("INSERT INTO t VALUES (?, 0)", [(i,) for i in range(n)])
    start = time.perf_counter()
    for i in range(n):
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE t SET v = v + 1 WHERE id = ?", (i,))
        db.execute("COMMIT")
    return n / (time.perf_counter() - start)


def end_to_end_rate(n: int, data_dir: Path, workers: int) -> float:
    settings = Settings(data_dir=data_dir, workers=workers, resync_interval_s=3600)
    optio = build(settings)
    db = optio.db
    with db.write() as s:
        job = Job(workspace_id=1, name="bench", prompt_template="x", agent_type="script",
                  agent_config={"command": "true"})
        s.add(job)
        s.flush()
        s.execute(JobRun.__table__.insert(), [
            {"workspace_id": 1, "job_id": job.id, "state": "completed", "prompt": "x", "params": {}, "version": 1,
             "attempts": 1, "reconcile_attempts": 0, "cost_usd": 0.0, "cost_imputed": False, "input_tokens": 0,
             "output_tokens": 0, "cache_tokens": 0, "created_at": datetime.now(UTC), "updated_at": datetime.now(UTC)}
            for _ in range(n)
        ])
    with db.read() as s:
        ids = [r[0] for r in s.execute(JobRun.__table__.select().with_only_columns(JobRun.__table__.c.id))]
    with db.write() as s:
        for run_id in ids:
            queue.enqueue(s, "job_run", run_id, 1, reason="bench")
    start = time.perf_counter()
    optio.workers.start()
    while True:
        with db.read() as s:
            if queue.depth(s) == 0:
                break
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    optio.stop()
    return n / elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    import logging

    logging.disable(logging.CRITICAL)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    with tempfile.TemporaryDirectory() as tmp:
        pure = pure_rate(200_000)
        base = sqlite_baseline(n, Path(tmp) / "baseline.db")
        e2e_1 = end_to_end_rate(n, Path(tmp) / "one", workers=1)
        e2e_4 = end_to_end_rate(n, Path(tmp) / "four", workers=4)
    print(f"pure decide_job_run:                {pure:12,.0f} decisions/s")
    print(f"baseline bare SQLite write txns:    {base:12,.0f} txns/s")
    print(f"end to end, 1 worker  ({n:,} runs): {e2e_1:12,.0f} decisions/s")
    print(f"end to end, 4 workers ({n:,} runs): {e2e_4:12,.0f} decisions/s")
    print(f"ratio e2e(1 worker)/baseline txns:  {e2e_1 / base:12.3f}")
    print(f"ratio e2e(4 workers)/baseline txns: {e2e_4 / base:12.3f}")
    print(f"ratio e2e(4 workers)/pure:          {e2e_4 / pure:12.5f}")


if __name__ == "__main__":
    main()
