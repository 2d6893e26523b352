"""Resync at volume: one sweep over N non-terminal runs (default 100,000) of every kind, on SQLite.

Seeds the runs (Core bulk insert, spread over 3 workspaces; plus as many finished job runs, which the sweep must
skip), then times:
  (a) the sweep as it was before chunked set-based enqueues (the ids read at once, then one `queue.enqueue` per
      run, 500 per write transaction), for comparison;
  (b) the sweep (`optio.control.worker.resync`) with the queue empty: every run is enqueued;
  (c) the same sweep again, everything already queued: nothing to write.
While each runs, a second connection keeps taking the write lock (`BEGIN IMMEDIATE; COMMIT`) and records its
longest wait: how long any other writer (a worker, the API) was held up, including SQLite's busy-handler sleeps
(a blocked writer retries after 1, 2, 5, ... up to 100 ms, so it can wait longer than any one hold). Every write
transaction is timed too (the whole `with db.write()` block): the longest bounds the longest the sweep held the
lock.
Baseline, measured in the same run: one bare `INSERT INTO scratch SELECT ...` of the same N rows (the raw cost of
writing them, under one lock hold). Goals: a sweep under 5 s, the write lock never held over 50 ms at a time.

usage: .venv/bin/python bench/resync.py [N] [--chunk C] [--no-before]   (--no-before skips (a), minutes at 100,000)
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import delete

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, shared with the volume tests

from tests.support.volume import insert_mixed_runs, scopes

from optio.config import Settings
from optio.control.worker import RESYNC_CHUNK, resync
from optio.server import Optio, build
from optio.store import queue, runs
from optio.store.db import Database
from optio.store.models import ReconcileItem

GOAL_S = 5.0
GOAL_LOCK_MS = 50.0


class LockProbe:
    """A second writer that takes the write lock over and over and records its longest wait for it."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
        self.conn.execute("PRAGMA busy_timeout=60000")
        self.max_wait = 0.0
        self.probes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self.conn.execute("BEGIN IMMEDIATE")
            waited = time.perf_counter() - started
            self.conn.execute("COMMIT")
            self.max_wait = max(self.max_wait, waited)
            self.probes += 1
            time.sleep(0.001)

    def __enter__(self) -> LockProbe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.conn.close()


class WriteTimer:
    """Times every write transaction of the database, the whole `with db.write()` block: an upper bound on how
    long each held the write lock (BEGIN IMMEDIATE to COMMIT lie inside it)."""

    def __init__(self, db: Database) -> None:
        self.longest = 0.0
        self.count = 0
        self.holds: list[float] = []
        plain = db.write

        @contextmanager
        def timed() -> Iterator[Any]:
            started = time.perf_counter()
            with plain() as session:
                yield session
            took = time.perf_counter() - started
            self.longest = max(self.longest, took)
            self.holds.append(took)
            self.count += 1

        db.write = timed  # type: ignore[method-assign]

    def reset(self) -> None:
        self.longest, self.count, self.holds = 0.0, 0, []

    def p99(self) -> float:
        return sorted(self.holds)[int(len(self.holds) * 0.99)] if self.holds else 0.0


def legacy_sweep(optio: Optio) -> int:
    """The sweep as it was: every open run's id read at once, then one enqueue per run, 500 per transaction."""
    count = 0
    for kind, handler in optio.ctx.handlers.items():
        with optio.db.read() as session:
            ids = runs.non_terminal_ids(session, kind, handler.terminal)
        for start in range(0, len(ids), 500):
            with optio.db.write() as session:
                for run_id, ws in ids[start:start + 500]:
                    queue.enqueue(session, kind, run_id, ws, reason="resync")
        count += len(ids)
    return count


def baseline(path: Path) -> float:
    """One bare INSERT ... SELECT of every repo task, job run and review run into a scratch table."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE scratch (id INTEGER PRIMARY KEY, kind TEXT, run_id INTEGER, workspace_id INTEGER,"
                 " not_before TEXT, UNIQUE (kind, run_id))")
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    for kind, table in (("repo_task", "repo_tasks"), ("job_run", "job_runs"), ("pr_review", "review_runs"),
                        ("agent", "persistent_agents")):
        conn.execute(f"INSERT INTO scratch (kind, run_id, workspace_id, not_before) SELECT ?, id, workspace_id, "
                     f"datetime('now') FROM {table} WHERE state NOT IN ('completed', 'failed', 'cancelled', "
                     f"'archived')", (kind,))
    conn.execute("COMMIT")
    took = time.perf_counter() - started
    conn.execute("DROP TABLE scratch")
    conn.close()
    return took


def measured(optio: Optio, path: Path, timer: WriteTimer, sweep: Any
             ) -> tuple[int, float, float, float, float, int]:
    timer.reset()
    with LockProbe(path) as probe:
        time.sleep(0.05)
        started = time.perf_counter()
        enqueued = sweep()
        took = time.perf_counter() - started
    return enqueued, took, probe.max_wait, timer.p99(), timer.longest, timer.count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=RESYNC_CHUNK)
    parser.add_argument("--no-before", action="store_true")
    args = parser.parse_args()
    n = args.n
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        optio = build(Settings(data_dir=data, resync_interval_s=3600))
        path = data / "optio.db"
        assert path.exists(), path
        t0 = time.perf_counter()
        counts = insert_mixed_runs(optio.db, scopes(optio.db), n, terminal_too=n)
        print(f"seeded {n:,} open runs ({', '.join(f'{k} {v:,}' for k, v in counts.items())}) and {n:,} finished "
              f"job runs in {time.perf_counter() - t0:.1f}s")
        base = baseline(path)
        timer = WriteTimer(optio.db)

        results = {}
        if not args.no_before:
            results["before: per-run enqueues"] = measured(optio, path, timer, lambda: legacy_sweep(optio))
            with optio.db.write() as session:
                session.execute(delete(ReconcileItem))
        results["sweep, queue empty"] = measured(optio, path, timer, lambda: resync(optio.ctx, chunk=args.chunk))
        results["sweep, all queued"] = measured(optio, path, timer, lambda: resync(optio.ctx, chunk=args.chunk))
        with optio.db.read() as session:
            depth = queue.depth(session)
        assert depth == n, (depth, n)

        print(f"baseline: one bare INSERT ... SELECT of {n:,} rows: {base * 1000:.0f} ms (one lock hold)")
        print(f"{'':26} {'enqueued':>9} {'sweep s':>8} {'vs goal':>8} {'x base':>7} {'other writer max wait ms':>25} "
              f"{'write tx p99 ms':>16} {'longest ms':>11} {'write txs':>9}")
        for name, (enq, took, wait, p99, longest, txs) in results.items():
            print(f"{name:26} {enq:>9,} {took:>8.2f} {took / GOAL_S:>7.2f}x {took / base:>6.1f}x "
                  f"{wait * 1000:>25.1f} {p99 * 1000:>16.1f} {longest * 1000:>11.1f} {txs:>9,}")
        print(f"chunk {args.chunk:,} runs per write transaction")
        print(f"goals: sweep < {GOAL_S:.0f} s, lock held < {GOAL_LOCK_MS:.0f} ms at a time")
        optio.db.dispose()


if __name__ == "__main__":
    main()
