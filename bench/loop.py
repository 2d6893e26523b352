"""The closed loop at scale: N repo tasks from create to merged, against a plain shell baseline.

Optio runs each task through its real pipeline (`optio serve` subprocess, per-task worktree, script agent
writing one file, push, PR, CI command in a clean checkout, squash-merge). The baseline is
`bench/loop_baseline.sh`, which does the same git work for each task sequentially with nothing else.
Both run in this process's lifetime on this machine; the script prints optio/baseline, the median
latency from CI turning green to the merge landing, the number of CI runs (CI runs on the merge of each
PR onto the base tip, and PRs are re-tested when the base moved before they merged, several queued PRs
together in one merge-queue batch run), and how many commits
of main landed exactly a tree CI passed on over their parent (all of them, or main could have gone red).

usage: .venv/bin/python bench/loop.py [N]
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.git_remote import make_remote  # noqa: E402
from tests.support.optio_server import OptioServer  # noqa: E402

TERMINAL = {"completed", "failed", "cancelled", "needs_attention"}


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


def run_optio(n: int, tmp: Path) -> tuple[float, list[float], int, tuple[int, int], tuple[int, int]]:
    remote = make_remote(tmp)
    server = OptioServer(tmp / "data", env={"OPTIO_AUTH": "disabled", "OPTIO_LOG_LEVEL": "warning"}).start()
    try:
        # With auth disabled a write must say it is not cross-site, as the CLI does.
        csrf = {"X-Optio-CSRF": "1"}
        server.api("POST", "/api/repos", headers=csrf, json={"remote_url": str(remote), "name": "bench",
                                                             "ci_command": 'test -n "$(ls task-*.txt)"'}
                   ).raise_for_status()
        start = time.perf_counter()
        ids = []
        for i in range(n):
            resp = server.api("POST", "/api/repo-tasks", headers=csrf, json={
                "repo": "bench", "title": f"task {i}", "prompt": "write one file",
                "agent_config": {"command": 'echo done > "task-$OPTIO_TASK_ID.txt"'}})
            resp.raise_for_status()
            ids.append(resp.json()["id"])
        pending = set(ids)
        while pending:
            page = server.api("GET", "/api/repo-tasks", params={"limit": 500}).json()["items"]
            pending = {t["id"] for t in page if t["id"] in pending and t["state"] not in TERMINAL}
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        with sqlite3.connect(server.data_dir / "optio.db") as db:
            # The green run a merge waited for is the head's last passing one (earlier ones were on older bases),
            # or the batch it landed with.
            rows = db.execute(
                "SELECT p.id, max(c.finished_at), p.merged_at FROM pull_requests p JOIN ci_runs c ON c.pr_id = p.id "
                "AND c.head_sha = p.head_sha WHERE p.state = 'merged' AND c.status = 'passing' "
                "GROUP BY p.id").fetchall()
            batch_green = {pr_id: finished for ids, finished in db.execute(
                "SELECT pr_ids, finished_at FROM merge_batches WHERE status = 'landed'") for pr_id in json.loads(ids)}
            rows = [(batch_green.get(pr_id, green), merged) for pr_id, green, merged in rows]
            completed = db.execute("SELECT count(*) FROM repo_tasks WHERE state='completed'").fetchone()[0]
            ci_runs = db.execute("SELECT count(*) FROM ci_runs").fetchone()[0]
            batch_runs = db.execute("SELECT count(*) FROM merge_batches WHERE started_at IS NOT NULL").fetchone()[0]
            tested = tested_on_parent(remote, server.data_dir / "repos" / "1" / "cache.git", db)
        latencies = [(datetime.fromisoformat(m) - datetime.fromisoformat(c)).total_seconds() for c, m in rows]
        return elapsed, latencies, completed, (ci_runs, batch_runs), tested
    finally:
        server.stop()


def run_baseline(n: int, tmp: Path) -> float:
    out = subprocess.run(["bash", str(ROOT / "bench" / "loop_baseline.sh"), str(n), str(tmp)], check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        baseline = run_baseline(n, Path(b))
        elapsed, latencies, completed, (pr_runs, batch_runs), (tested, merged) = run_optio(n, Path(a))
    ci_runs = pr_runs + batch_runs
    print(f"tasks: {n}  merged by optio: {completed}")
    print(f"CI runs: {ci_runs} ({ci_runs / max(n, 1):.2f} per task; {batch_runs} of them merge-queue batches)")
    print(f"main commits that landed a tree CI passed on, over their parent: {tested}/{merged}")
    print(f"baseline shell script (sequential git work): {baseline:8.2f} s")
    print(f"optio (create → merged, whole loop):         {elapsed:8.2f} s")
    print(f"ratio optio/baseline:                        {elapsed / baseline:8.2f}")
    if latencies:
        print(f"median CI green → merged latency:            {statistics.median(latencies) * 1000:8.0f} ms")
        print(f"p90 CI green → merged latency:               "
              f"{statistics.quantiles(latencies, n=10)[-1] * 1000 if len(latencies) > 1 else 0:8.0f} ms")


if __name__ == "__main__":
    main()
