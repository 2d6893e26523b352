"""The closed loop at scale: N repo tasks from create to merged, against a plain shell baseline.

Optio runs each task through its real pipeline (`optio serve` subprocess, per-task worktree, script agent
writing one file, push, PR, CI command in a clean checkout, squash-merge). The baseline is
`bench/loop_baseline.sh`, which does the same git work for each task sequentially with nothing else.
Both run in this process's lifetime on this machine; the script prints optio/baseline, the median
latency from CI turning green to the merge landing, the number of CI runs (CI runs on the merge of each
PR onto the base tip, and PRs are re-tested when the base moved before they merged, several queued PRs
together in one merge-queue batch run), and how many commits
of main landed exactly a tree CI passed on over their parent (all of them, or main could have gone red).

The baseline runs before and after Optio; the ratio is against the mean of the two. The loop's time is read
from the database (first task created → last task finished), so how often this
script looks does not count; it looks by reading the SQLite file, not through the API, to keep its own load
off the server. Then SINGLE tasks (default 5) run one at a time, each alone in the system: their median
CI green → merged latency is the single-task figure. The load average is printed before and after.

usage: .venv/bin/python bench/loop.py [N] [SINGLE]
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.git_remote import make_remote  # noqa: E402
from tests.support.optio_server import OptioServer  # noqa: E402

TERMINAL = ("completed", "failed", "cancelled", "needs_attention")
# With auth disabled a write must say it is not cross-site, as the CLI does.
CSRF = {"X-Optio-CSRF": "1"}


def tested_on_parent(remote: Path, cache: Path, db: sqlite3.Connection) -> tuple[int, int]:
    """(commits of main whose tree CI passed on, as a merge onto their parent; commits Optio merged)."""
    def git(cwd: Path, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout

    # A PR's own run, or a merge-queue batch's one run on several PRs merged together onto its base.
    rows = db.execute("SELECT base_sha, tested_sha FROM ci_runs WHERE status='passing' AND tested_sha IS NOT NULL "
                      "UNION SELECT base_sha, tested_sha FROM merge_batches WHERE status IN ('passing', 'landed') "
                      "AND tested_sha IS NOT NULL").fetchall()
    tested = {(base, git(cache, "rev-parse", f"{sha}^{{tree}}").strip()) for base, sha in rows}
    merged = [line.split() for line in git(remote, "log", "--first-parent", "--format=%H %P", "main").splitlines()]
    merged = [row for row in merged if len(row) > 1]
    ok = sum((parent, git(remote, "rev-parse", f"{sha}^{{tree}}").strip()) in tested for sha, parent, *_ in merged)
    return ok, len(merged)


def client_for(server: OptioServer) -> httpx.Client:
    """One connection for all the creates, as a script or the dashboard would hold: a new client per request
    costs the bench tens of milliseconds of its own (TLS context, connection), counted as Optio's time."""
    return httpx.Client(base_url=server.url, timeout=30,
                        headers={"Authorization": f"Bearer {server.admin_key}", **CSRF})


def create_task(client: httpx.Client, i: int) -> int:
    resp = client.post("/api/repo-tasks", json={
        "repo": "bench", "title": f"task {i}", "prompt": "write one file",
        "agent_config": {"command": 'echo done > "task-$OPTIO_TASK_ID.txt"'}})
    resp.raise_for_status()
    return int(resp.json()["id"])


def wait_terminal(db_path: Path, ids: list[int]) -> None:
    """Until every task is over, read from the database file (a reader never blocks the server's writes)."""
    marks = ",".join("?" * len(TERMINAL))
    while True:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30) as db:
            left = db.execute(f"SELECT count(*) FROM repo_tasks WHERE id BETWEEN ? AND ? AND state NOT IN ({marks})",
                              (min(ids), max(ids), *TERMINAL)).fetchone()[0]
        if not left:
            return
        time.sleep(0.2)


def green_to_merged(db: sqlite3.Connection, ids: list[int]) -> list[float]:
    """Seconds from the green CI (of the PR's head, or of the batch it landed with) to its merge, per merged PR."""
    marks = ",".join("?" * len(ids))
    # The green run a merge waited for is the head's last passing one (earlier ones were on older bases),
    # or the batch it landed with.
    rows = db.execute(
        "SELECT p.id, max(c.finished_at), p.merged_at FROM pull_requests p JOIN ci_runs c ON c.pr_id = p.id "
        f"AND c.head_sha = p.head_sha WHERE p.state = 'merged' AND c.status = 'passing' AND p.task_id IN ({marks}) "
        "GROUP BY p.id", ids).fetchall()
    batch_green = {pr_id: finished for pr_ids, finished in db.execute(
        "SELECT pr_ids, finished_at FROM merge_batches WHERE status = 'landed'") for pr_id in json.loads(pr_ids)}
    pairs = [(batch_green.get(pr_id, green), merged) for pr_id, green, merged in rows]
    return [(datetime.fromisoformat(m) - datetime.fromisoformat(c)).total_seconds() for c, m in pairs]


def agents_at_work(db: sqlite3.Connection, ids: list[int]) -> dict[int, float]:
    """Seconds the repo spent with each number of its tasks holding an agent slot (provisioning until the agent
    exits), over the loop. A repo whose slots sit idle with tasks queued shows here as time at one or none."""
    marks = ",".join("?" * len(ids))
    starts = dict(db.execute(
        "SELECT run_id, min(created_at) FROM run_events WHERE run_kind = 'repo_task' AND to_state = 'provisioning' "
        f"AND run_id IN ({marks}) GROUP BY run_id", ids).fetchall())
    ends = dict(db.execute(
        "SELECT run_id, max(finished_at) FROM agent_processes WHERE run_kind = 'repo_task' AND purpose = 'agent' "
        f"AND finished_at IS NOT NULL AND run_id IN ({marks}) GROUP BY run_id", ids).fetchall())
    held = [(datetime.fromisoformat(starts[t]), datetime.fromisoformat(ends[t])) for t in starts if t in ends]
    edges = sorted([(start, 1) for start, _ in held] + [(end, -1) for _, end in held])
    spent: dict[int, float] = {}
    holding = 0
    for (at, step), (following, _) in pairwise(edges):
        holding += step
        spent[holding] = spent.get(holding, 0.0) + (following - at).total_seconds()
    return spent


@dataclass
class LoopResult:
    elapsed: float  # first task created → last task finished, seconds
    latencies: list[float]  # CI green → merged of the N tasks run at once
    single: list[float]  # CI green → merged of the tasks run one at a time
    completed: int
    pr_runs: int
    batch_runs: int
    tested: int  # main commits that landed a tree CI passed on over their parent
    merged: int
    slots: dict[int, float]  # seconds with each number of agent slots held


def run_optio(n: int, singles: int, tmp: Path) -> LoopResult:
    remote = make_remote(tmp)
    server = OptioServer(tmp / "data", env={"OPTIO_AUTH": "disabled", "OPTIO_LOG_LEVEL": "warning"}).start()
    db_path = server.data_dir / "optio.db"
    client = client_for(server)
    try:
        server.api("POST", "/api/repos", headers=CSRF, json={"remote_url": str(remote), "name": "bench",
                                                             "ci_command": 'test -n "$(ls task-*.txt)"'}
                   ).raise_for_status()
        ids = [create_task(client, i) for i in range(n)]
        wait_terminal(db_path, ids)
        with sqlite3.connect(db_path) as db:  # the N tasks' own CI runs, before the single ones add theirs
            ci_runs = db.execute("SELECT count(*) FROM ci_runs").fetchone()[0]
            batch_runs = db.execute("SELECT count(*) FROM merge_batches WHERE started_at IS NOT NULL").fetchone()[0]
        single_ids = []
        for i in range(singles):  # one at a time: each task alone in the system
            single_ids.append(create_task(client, n + i))
            wait_terminal(db_path, single_ids[-1:])
        with sqlite3.connect(db_path) as db:
            marks = ",".join("?" * len(ids))
            first, last = db.execute(f"SELECT min(created_at), max(finished_at) FROM repo_tasks WHERE id IN ({marks})",
                                     ids).fetchone()
            completed = db.execute(f"SELECT count(*) FROM repo_tasks WHERE state='completed' AND id IN ({marks})",
                                   ids).fetchone()[0]
            tested = tested_on_parent(remote, server.data_dir / "repos" / "1" / "cache.git", db)
            latencies = green_to_merged(db, ids)
            single = green_to_merged(db, single_ids) if single_ids else []
            slots = agents_at_work(db, ids)
        elapsed = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
        return LoopResult(elapsed, latencies, single, completed, ci_runs, batch_runs, *tested, slots)
    finally:
        client.close()
        server.stop()


def run_baseline(n: int, tmp: Path) -> float:
    out = subprocess.run(["bash", str(ROOT / "bench" / "loop_baseline.sh"), str(n), str(tmp)], check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    singles = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    load_before = os.getloadavg()
    # The baseline runs once before Optio and once after, and the ratio is against their mean: this machine's
    # speed drifts by a fifth and more within minutes (vmstat shows CPU steal), and a baseline taken only on one
    # side of the Optio run would carry that drift into the ratio.
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, tempfile.TemporaryDirectory() as c:
        before = run_baseline(n, Path(b))
        result = run_optio(n, singles, Path(a))
        after = run_baseline(n, Path(c))
    baseline = (before + after) / 2
    elapsed, latencies, single = result.elapsed, result.latencies, result.single
    batch_runs, ci_runs = result.batch_runs, result.pr_runs + result.batch_runs
    print(f"load average before/after:                   {load_before[0]:.2f} / {os.getloadavg()[0]:.2f}")
    print(f"tasks: {n}  merged by optio: {result.completed}")
    print(f"CI runs: {ci_runs} ({ci_runs / max(n, 1):.2f} per task; {batch_runs} of them merge-queue batches)")
    print(f"main commits that landed a tree CI passed on, over their parent: {result.tested}/{result.merged}")
    print(f"baseline shell script (sequential git work): {baseline:8.2f} s  (before / after Optio: "
          f"{before:.2f} / {after:.2f} s)")
    print(f"optio (create → merged, whole loop):         {elapsed:8.2f} s")
    print(f"ratio optio/baseline:                        {elapsed / baseline:8.2f}")
    held = sum(result.slots.values()) or 1.0
    print("agent slots held (seconds at 0/1/2/...):     "
          + " / ".join(f"{result.slots.get(k, 0.0):.1f}" for k in range(max(result.slots, default=0) + 1))
          + f"  (mean {sum(k * v for k, v in result.slots.items()) / held:.2f})")
    if latencies:
        print(f"median CI green → merged latency ({n} at once): {statistics.median(latencies) * 1000:6.0f} ms")
        print(f"p90 CI green → merged latency ({n} at once):    "
              f"{statistics.quantiles(latencies, n=10)[-1] * 1000 if len(latencies) > 1 else 0:6.0f} ms")
    if single:
        print(f"median CI green → merged, one task alone ({len(single)} runs): "
              f"{statistics.median(single) * 1000:6.0f} ms  (goal ≤ 250 ms)")


if __name__ == "__main__":
    main()
