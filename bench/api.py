"""The API at volume: N repo tasks (default 100,000) over 3 workspaces, read through a real `optio serve`.

Starts the real server (uvicorn on 127.0.0.1, HTTP only: nothing reconciles, so states stay as seeded), seeds the
tasks with Core bulk inserts (realistic states: most finished, the rest spread over the open states), then times
over one keep-alive connection, as the bootstrap admin in the default workspace (a third of the tasks):
  - list, first page: `GET /api/repo-tasks?limit=50`;
  - list, every page via the cursor: the whole workspace walked 50 at a time (its deep pages included);
  - filter by state: `GET /api/repo-tasks?state=S&limit=50` for an open, a rare and the commonest state;
  - the task feed, first page and filtered: `GET /api/tasks?limit=50`, `GET /api/tasks?state=running&limit=50`;
  - open a task: `GET /api/repo-tasks/{id}` for random tasks of the workspace.
Baselines, measured in the same run on the same server: `GET /api/health` (no auth, no database), and
`GET /api/repos` (auth and one tiny query). Prints p50/p99 against the 50 ms goal and the baselines' p99.

usage: .venv/bin/python bench/api.py [N] [--repeat R]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, shared with the volume tests

from tests.support.optio_server import OptioServer
from tests.support.volume import insert_tasks, scopes

from optio.store.db import Database

GOAL_MS = 50.0


def timed(client: httpx.Client, path: str, params: dict[str, object] | None = None) -> tuple[float, dict]:
    started = time.perf_counter()
    res = client.get(path, params=params)
    took = time.perf_counter() - started
    res.raise_for_status()
    return took, res.json()


def sample(repeat: int, call: Callable[[], float]) -> list[float]:
    call()  # warm: the first request of a kind pays imports and plan preparation
    return [call() for _ in range(repeat)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = OptioServer(Path(tmp) / "data", env={"OPTIO_LOG_LEVEL": "warning"})
        server.serve_args = ["--role", "api"]
        server.start(timeout=120)
        db = Database(f"sqlite:///{Path(tmp) / 'data' / 'optio.db'}")
        try:
            t0 = time.perf_counter()
            sc = scopes(db)
            insert_tasks(db, sc, args.n)
            print(f"seeded {args.n:,} repo tasks over {len(sc)} workspaces in {time.perf_counter() - t0:.1f}s")
            run(server, db, sc[0].workspace_id, args.repeat)
        finally:
            server.stop()
            db.dispose()


def run(server: OptioServer, db: Database, workspace_id: int, repeat: int) -> None:
    from sqlalchemy import func, select

    from optio.store.models import RepoTask

    with db.read() as s:
        ids = list(s.scalars(select(RepoTask.id).where(RepoTask.workspace_id == workspace_id)))
        counts = s.execute(select(RepoTask.state, func.count()).where(RepoTask.workspace_id == workspace_id)
                           .group_by(RepoTask.state))
        by_state: dict[str, int] = {state: int(count) for state, count in counts}
    rng = random.Random(18)
    results: dict[str, list[float]] = {}
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        results["baseline: GET /api/health"] = sample(repeat, lambda: timed(client, "/api/health")[0])
        results["baseline: GET /api/repos"] = sample(repeat, lambda: timed(client, "/api/repos")[0])
        results["list, first page"] = sample(repeat, lambda: timed(client, "/api/repo-tasks", {"limit": 50})[0])
        walk: list[float] = []
        cursor = None
        while True:
            took, page = timed(client, "/api/repo-tasks", {"limit": 50, **({"cursor": cursor} if cursor else {})})
            walk.append(took)
            cursor = page["next_cursor"]
            if cursor is None:
                break
        results[f"list, all {len(walk)} pages by cursor"] = walk
        rare = min(by_state, key=lambda k: by_state[k])
        common = max(by_state, key=lambda k: by_state[k])
        for state in dict.fromkeys(("running", rare, common)):
            results[f"filter state={state} ({by_state[state]:,})"] = sample(
                repeat, lambda state=state: timed(client, "/api/repo-tasks", {"state": state, "limit": 50})[0])
        results["feed, first page"] = sample(repeat, lambda: timed(client, "/api/tasks", {"limit": 50})[0])
        results["feed, state=running"] = sample(
            repeat, lambda: timed(client, "/api/tasks", {"state": "running", "limit": 50})[0])
        results["open a task"] = sample(repeat, lambda: timed(client, f"/api/repo-tasks/{rng.choice(ids)}")[0])

    base = pct(results["baseline: GET /api/health"], 0.99)
    print(f"workspace {workspace_id}: {len(ids):,} of the tasks; goal p99 < {GOAL_MS:.0f} ms")
    print(f"{'':44} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'p99/goal':>9} {'p99/health':>11} "
          f"{'mean ms':>8}")
    for name, values in results.items():
        p99 = pct(values, 0.99)
        print(f"{name:44} {len(values):>5} {pct(values, 0.5):>8.1f} {p99:>8.1f} {p99 / GOAL_MS:>8.2f}x "
              f"{p99 / base:>10.1f}x {statistics.mean(values) * 1000:>8.1f}")


if __name__ == "__main__":
    main()
