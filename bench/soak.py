"""Server memory across a long soak: N repo tasks through a real `optio serve`, in waves, RSS sampled.

Each wave creates WAVE repo tasks (script agent writing one file, CI on the merge result, squash-merge on the
local forge) and waits until all of them are over; the server's resident set size is read after every wave
(psutil, the server process only, not its agents). The first WARMUP waves fill the caches, connection pools and
allocator arenas a server keeps anyway; the drift is the last sample against the first one after warm-up, and
the goal is that it stays within ±10 %. The baseline is the server's own RSS after warm-up, measured in the
same run. It also prints the number of open file descriptors and threads, which must not grow either.

usage: .venv/bin/python bench/soak.py [N] [WAVE] [WARMUP]     (defaults: 1000 tasks, waves of 50, 2 warm-up)
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.git_remote import make_remote  # noqa: E402
from tests.support.optio_server import OptioServer  # noqa: E402

TERMINAL = ("completed", "failed", "cancelled", "needs_attention")
# With auth disabled a write must say it is not cross-site, as the CLI does.
CSRF = {"X-Optio-CSRF": "1"}
GOAL_PCT = 10.0


def wait_terminal(db_path: Path, first: int, last: int) -> None:
    """Until tasks first..last are over, read from the database file (a reader never blocks the server)."""
    marks = ",".join("?" * len(TERMINAL))
    while True:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30) as db:
            left = db.execute(f"SELECT count(*) FROM repo_tasks WHERE id BETWEEN ? AND ? AND state NOT IN ({marks})",
                              (first, last, *TERMINAL)).fetchone()[0]
        if not left:
            return
        time.sleep(0.5)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    wave = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    warmup = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    waves = max(1, -(-n // wave))
    if waves <= warmup:
        raise SystemExit(f"{n} tasks in waves of {wave} leave nothing after {warmup} warm-up waves")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        remote = make_remote(Path(tmp))
        server = OptioServer(Path(tmp) / "data", env={"OPTIO_AUTH": "disabled", "OPTIO_LOG_LEVEL": "warning"}).start()
        assert server.proc is not None
        proc = psutil.Process(server.proc.pid)
        db_path = server.data_dir / "optio.db"
        samples: list[tuple[int, int, int, int]] = []  # (tasks done, rss bytes, open fds, threads)
        started = time.monotonic()
        try:
            server.api("POST", "/api/repos", headers=CSRF, json={
                "remote_url": str(remote), "name": "soak", "ci_command": 'test -n "$(ls task-*.txt)"'}
                       ).raise_for_status()
            done = 0
            for w in range(waves):
                size = min(wave, n - done)
                ids = []
                for i in range(size):
                    resp = server.api("POST", "/api/repo-tasks", headers=CSRF, json={
                        "repo": "soak", "title": f"task {done + i}", "prompt": "write one file",
                        "agent_config": {"command": 'echo done > "task-$OPTIO_TASK_ID.txt"'}})
                    resp.raise_for_status()
                    ids.append(int(resp.json()["id"]))
                wait_terminal(db_path, min(ids), max(ids))
                done += size
                rss = proc.memory_info().rss
                samples.append((done, rss, proc.num_fds(), proc.num_threads()))
                tag = " (warm-up)" if w < warmup else ""
                print(f"wave {w + 1:3d}/{waves}: {done:5d} tasks  rss {rss / 2**20:7.1f} MiB  fds {proc.num_fds():4d}  "
                      f"threads {proc.num_threads():3d}  {time.monotonic() - started:7.1f} s{tag}", flush=True)
            with sqlite3.connect(db_path) as db:
                completed = db.execute("SELECT count(*) FROM repo_tasks WHERE state = 'completed'").fetchone()[0]
        finally:
            server.stop()
    measured = samples[warmup - 1:] if warmup else samples
    first, last = measured[0][1], measured[-1][1]
    peak = max(rss for _, rss, _, _ in measured)
    drift = (last - first) / first * 100
    print(f"tasks: {n}  completed: {completed}  waves of {wave}, {warmup} warm-up")
    print(f"load average before/after:     {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print(f"server RSS after warm-up (baseline): {first / 2**20:7.1f} MiB")
    print(f"server RSS at the end:               {last / 2**20:7.1f} MiB")
    print(f"server RSS max after warm-up:        {peak / 2**20:7.1f} MiB")
    print(f"drift end/baseline:                  {drift:+7.1f} %  (goal within ±{GOAL_PCT:g} %: "
          f"{'met' if abs(drift) <= GOAL_PCT else 'NOT met'})")
    print(f"open fds after warm-up → end:        {measured[0][2]} → {measured[-1][2]}")
    print(f"threads after warm-up → end:         {measured[0][3]} → {measured[-1][3]}")


if __name__ == "__main__":
    main()
