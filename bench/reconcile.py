"""Reconcile throughput: the pure decision alone, and end to end through the queue + CAS executor.

Prints decisions per second for (a) `decide_job_run` over varied snapshots, (b) the full path — claim from
the durable queue, build snapshots from SQLite, decide, apply, ack — draining N queued no-op job runs with
the batched hot path (1 and 4 worker threads) and, for comparison in the same run, with the per-item path
alone, and (c) the baseline measured in the same run: N bare one-row SQLite write transactions, the floor any
durable per-item queue pays. Ratios are against (c); the goal is end to end >= 5 % of it.

With `--postgres URL` (or `OPTIO_TEST_POSTGRES_URL` set, as `scripts/start-test-postgres.sh` prints it) it
also drains N queued no-op runs on that PostgreSQL server with 1, 2 and 4 worker threads, each in a fresh
database it drops afterwards, next to N bare one-row PostgreSQL write transactions.

usage: .venv/bin/python bench/reconcile.py [N] [--postgres URL] [--skip-per-item]
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support: throwaway PostgreSQL databases

from tests.support.postgres import database_on

from optio.config import Settings
from optio.control import hotpath
from optio.domain.reconcile.job import decide_job_run
from optio.domain.snapshot import Capacity, JobRunSnapshot, ProcessStatus, ProcessView, RunView
from optio.domain.states import RunKind
from optio.server import build
from optio.store import queue
from optio.store.models import Job, JobRun, ReconcileItem

GOAL = 0.05


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


def postgres_baseline(n: int, url: str) -> float:
    """N bare one-row write transactions over one connection (autocommit off: BEGIN, UPDATE, COMMIT)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_t (id INTEGER PRIMARY KEY, v INTEGER)"))
        conn.execute(text("INSERT INTO bench_t SELECT g, 0 FROM generate_series(0, :n) g"), {"n": n})
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        start = time.perf_counter()
        for i in range(n):
            cur.execute("UPDATE bench_t SET v = v + 1 WHERE id = %s", (i,))
            raw.commit()
        return n / (time.perf_counter() - start)
    finally:
        raw.close()
        engine.dispose()


def end_to_end_rate(n: int, settings: Settings, *, per_item: bool = False) -> float:
    """Drain N queued no-op (completed) job runs with the worker pool; decisions per second."""
    kinds = hotpath.KINDS
    if per_item:
        hotpath.KINDS = frozenset()  # no kind takes the batched path: every item goes one by one
    optio = build(settings)
    try:
        db = optio.db
        now = datetime.now(UTC)
        with db.write() as s:
            job = Job(workspace_id=1, name="bench", prompt_template="x", agent_type="script",
                      agent_config={"command": "true"})
            s.add(job)
            s.flush()
            s.execute(JobRun.__table__.insert(), [
                {"workspace_id": 1, "job_id": job.id, "state": "completed", "prompt": "x", "params": {},
                 "version": 1, "attempts": 1, "reconcile_attempts": 0, "cost_usd": 0.0, "cost_imputed": False,
                 "input_tokens": 0, "output_tokens": 0, "cache_tokens": 0, "created_at": now, "updated_at": now}
                for _ in range(n)
            ])
        with db.read() as s:
            ids = [r[0] for r in s.execute(JobRun.__table__.select().with_only_columns(JobRun.__table__.c.id))]
        with db.write() as s:
            s.execute(ReconcileItem.__table__.insert(), [
                {"kind": "job_run", "run_id": run_id, "workspace_id": 1, "generation": 1, "not_before": now,
                 "reason": "bench", "enqueued_at": now} for run_id in ids
            ])
        start = time.perf_counter()
        optio.workers.start()
        while True:
            with db.read() as s:
                if queue.depth(s) == 0:
                    break
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        return n / elapsed
    finally:
        optio.stop()
        optio.db.dispose()
        hotpath.KINDS = kinds


def sqlite_settings(data_dir: Path, *, workers: int) -> Settings:
    return Settings(data_dir=data_dir, workers=workers, resync_interval_s=3600, auth="disabled")


def sqlite_report(n: int, skip_per_item: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pure = pure_rate(200_000)
        base = sqlite_baseline(n, root / "baseline.db")
        e2e_1 = end_to_end_rate(n, sqlite_settings(root / "one", workers=1))
        e2e_4 = end_to_end_rate(n, sqlite_settings(root / "four", workers=4))
        per_item = None
        if not skip_per_item:
            per_item = end_to_end_rate(n, sqlite_settings(root / "per-item", workers=1), per_item=True)
    print(f"SQLite, {n:,} queued no-op job runs (load average {os.getloadavg()[0]:.2f})")
    print(f"  pure decide_job_run:                 {pure:12,.0f} decisions/s")
    print(f"  baseline bare SQLite write txns:     {base:12,.0f} txns/s")
    print(f"  end to end, hot path, 1 worker:      {e2e_1:12,.0f} decisions/s")
    print(f"  end to end, hot path, 4 workers:     {e2e_4:12,.0f} decisions/s")
    if per_item is not None:
        print(f"  end to end, per-item path, 1 worker: {per_item:12,.0f} decisions/s")
    print(f"  ratio e2e(1 worker)/baseline:        {e2e_1 / base:12.3f}   (goal >= {GOAL:.2f})")
    print(f"  ratio e2e(4 workers)/baseline:       {e2e_4 / base:12.3f}   (goal >= {GOAL:.2f})")
    if per_item is not None:
        print(f"  ratio per-item(1 worker)/baseline:   {per_item / base:12.3f}")
        print(f"  speed-up hot path / per-item path:   {e2e_1 / per_item:12.1f}x")


def postgres_report(n: int, server: str) -> None:
    with database_on(server, prefix="optio_bench") as url:
        base = postgres_baseline(n, url)
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2, 4):
            with database_on(server, prefix="optio_bench") as url:
                settings = Settings(data_dir=Path(tmp) / f"pg-{workers}", database_url=url, workers=workers,
                                    resync_interval_s=3600, auth="disabled")
                rates[workers] = end_to_end_rate(n, settings)
    print(f"PostgreSQL, {n:,} queued no-op job runs (load average {os.getloadavg()[0]:.2f})")
    print(f"  baseline bare PostgreSQL write txns: {base:12,.0f} txns/s")
    for workers, rate in rates.items():
        print(f"  end to end, hot path, {workers} worker{'s' if workers > 1 else ' '}:     {rate:12,.0f} decisions/s"
              f"   (ratio to baseline {rate / base:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=10_000)
    parser.add_argument("--postgres", default=os.environ.get("OPTIO_TEST_POSTGRES_URL"),
                        help="a PostgreSQL server URL (default: $OPTIO_TEST_POSTGRES_URL)")
    parser.add_argument("--skip-per-item", action="store_true", help="do not measure the per-item path")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    if not args.skip_sqlite:
        sqlite_report(args.n, args.skip_per_item)
    if args.postgres:
        postgres_report(args.n, args.postgres)


if __name__ == "__main__":
    main()
