"""Three `optio serve` replicas on one PostgreSQL database run a batch of the repo loop, and lose two of them.

Real servers, real git remote, real script agents and CI commands, real PostgreSQL. The replicas share the
data dir (the local runtime and local forge keep git caches and run logs there) and the database; one is
`kill -9`ed mid-batch, another is stopped with SIGTERM. Every task must still end merged, each agent
attempt must have run exactly once (the agent appends to a file outside Optio), no PR is opened twice, and
the sweeps' records show no two replicas ever ran the same sweep at the same moment.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer

TASKS = 60
END = {"completed", "failed", "cancelled", "needs_attention"}
CI = 'test -n "$(ls task-*.txt)"'


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    eng = create_engine(pg_url)
    try:
        yield eng
    finally:
        eng.dispose()


def rows(engine: Engine, sql: str, **params: object) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def replicas(tmp_path: Path, pg_url: str, n: int) -> list[OptioServer]:
    env = {
        "OPTIO_DATABASE_URL": pg_url,
        "OPTIO_REPLICA_LEASE_S": "2",
        "OPTIO_QUEUE_LEASE_S": "6",
        "OPTIO_WATCH_INTERVAL_S": "1",
        "OPTIO_RESYNC_INTERVAL_S": "2",
        "OPTIO_TRIGGER_TICK_S": "0.5",
        "OPTIO_MAX_CONCURRENT_RUNS": "24",
        "OPTIO_MAX_CONCURRENT_PER_REPO": "24",
        "OPTIO_LOG_LEVEL": "warning",
        # The agent writes to a file outside Optio (the count of its runs), which the sandbox would refuse;
        # the sandbox has its own tests.
        "OPTIO_SANDBOX": "off",
    }
    servers = [OptioServer(tmp_path / "data", env=env) for _ in range(n)]
    for i, server in enumerate(servers):
        server.admin_key = servers[0].admin_key  # one bootstrap admin in the shared database
        server.log_path = tmp_path / f"replica-{i}.log"
    return servers


def overlaps(runs: list[tuple[str, str, datetime, datetime | None]], ended: dict[str, datetime]
             ) -> list[tuple[object, ...]]:
    """Pairs of runs of one sweep by different replicas whose [start, end] intervals intersect.

    A run without an end was cut short by its replica's death: it ended no later than that.
    """
    found = []
    by_name: dict[str, list[tuple[str, datetime, datetime]]] = defaultdict(list)
    for name, owner, started, finished in runs:
        end = finished or ended.get(owner) or datetime.now(UTC)
        by_name[name].append((owner, started, end))
    for name, items in by_name.items():
        items.sort(key=lambda item: item[1])
        for i, (owner, started, end) in enumerate(items):
            for other, o_started, o_end in items[i + 1:]:
                if o_started >= end:
                    break
                if other != owner:
                    found.append((name, owner, started, end, other, o_started, o_end))
    return found


def holder(engine: Engine, lease: str) -> str | None:
    found = rows(engine, "SELECT owner FROM leases WHERE name = :name AND expires_at > now()", name=lease)
    return found[0][0] if found else None


def replica_of(engine: Engine, servers: list[OptioServer], owner: str) -> OptioServer:
    """The server whose process id is in the replica id (`host-pid-random`)."""
    pid = int(owner.rsplit("-", 2)[1])
    return next(s for s in servers if s.proc is not None and s.proc.pid == pid)


@pytest.mark.timeout(1500)  # minutes on a quiet machine; the bounds are for a loaded one
def test_three_replicas_finish_a_batch_after_one_is_killed_and_one_stopped(pg_url: str, engine: Engine,
                                                                        tmp_path: Path) -> None:
    started = time.monotonic()
    remote = make_remote(tmp_path)
    attempts = tmp_path / "attempts.log"
    servers = replicas(tmp_path, pg_url, 3)
    servers[0].start(timeout=120)  # migrates the database; the other two start together
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda server: server.start(timeout=120), servers[1:]))
    try:
        servers[0].api("POST", "/api/repos", json={"remote_url": str(remote), "name": "scaled",
                                                    "ci_command": CI}).raise_for_status()
        agent = f'echo "$OPTIO_TASK_ID $OPTIO_ATTEMPT" >> {attempts}; echo done > "task-$OPTIO_TASK_ID.txt"'

        def create(i: int) -> int:  # every replica's API takes work
            made = servers[i % 3].api("POST", "/api/repo-tasks", json={
                "repo": "scaled", "title": f"task {i}", "prompt": "write one file", "agent_config": {"command": agent}})
            assert made.status_code in (200, 201), made.text
            return int(made.json()["id"])

        with ThreadPoolExecutor(6) as pool:
            ids = list(pool.map(create, range(TASKS)))

        def states() -> Counter[str]:
            live = next(s for s in servers if s.proc is not None and s.proc.poll() is None)
            page = live.api("GET", "/api/repo-tasks", params={"limit": 500}).json()["items"]
            return Counter(t["state"] for t in page if t["id"] in ids)

        t0 = time.monotonic()
        print(f"{time.monotonic() - started:6.1f}s servers up, tasks created")

        def wait_for(check: object, timeout: float, what: str) -> None:
            deadline = time.monotonic() + timeout
            while not check():  # type: ignore[operator]
                assert time.monotonic() < deadline, (what, states())
                time.sleep(0.1)
            print(f"{time.monotonic() - t0:6.1f}s {what}: {dict(states())}")

        # Mid-batch: some merged, many still on their way. The replica running the PR watcher dies first,
        # then the one that took the sweep over is stopped gracefully.
        wait_for(lambda: states()["completed"] >= 8, 400, "first merges")
        ended: dict[str, datetime] = {}
        killed_owner = holder(engine, "sweep:pr-watcher")
        assert killed_owner is not None
        killed = replica_of(engine, servers, killed_owner)
        killed.kill9()
        ended[killed_owner] = datetime.now(UTC)
        # Another replica takes the watcher over within a lease period (2s) plus a renewal (2/3 s).
        wait_for(lambda: holder(engine, "sweep:pr-watcher") not in (None, killed_owner), 10, "watcher takeover")
        wait_for(lambda: states()["completed"] >= 25, 400, "merges after the kill")
        stopped_owner = holder(engine, "sweep:pr-watcher")
        assert stopped_owner is not None
        stopped = replica_of(engine, servers, stopped_owner)
        stopped.stop()
        ended[stopped_owner] = datetime.now(UTC)
        survivor = next(s for s in servers if s not in (killed, stopped))

        wait_for(lambda: sum(states()[s] for s in END) == TASKS, 400, "every task ends")
        final = states()
        assert final == Counter({"completed": TASKS}), (final, survivor.log()[-3000:])
    finally:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(OptioServer.stop, servers))

    # Each agent attempt ran exactly once, and every task ran at least its first one.
    lines = attempts.read_text().split()
    runs = Counter(zip(lines[::2], lines[1::2], strict=True))
    assert [run for run, count in runs.items() if count > 1] == []
    assert {int(task) for task, _ in runs} == set(ids)
    # One PR per task, each merged; every task file is on main.
    prs = rows(engine, "SELECT task_id, state FROM pull_requests")
    assert sorted(task for task, _ in prs) == sorted(ids)
    assert {state for _, state in prs} == {"merged"}
    on_main = git("ls-tree", "--name-only", "main", cwd=remote).split()
    assert {f"task-{task_id}.txt" for task_id in ids} <= set(on_main)
    # No sweep ran in two replicas at once; the PR watcher ran in all three over the batch.
    sweeps = rows(engine, "SELECT name, owner, started_at, finished_at FROM sweep_runs")
    assert overlaps(sweeps, ended) == []
    assert len({owner for name, owner, _, _ in sweeps if name == "sweep:pr-watcher"}) == 3
    # The killed replica's processes were adopted: none is left marked alive.
    assert rows(engine, "SELECT key, owner FROM agent_processes WHERE status IN ('starting', 'alive')") == []
