"""`kill -9` of the server at 20 random moments during a 50-task batch, restarting it on the same data dir each time.

The agents are scripts that report every invocation to a ledger in this test process (outside Optio), print
numbered lines, and write one file; one task in five writes a file its CI rejects the first time, so it is
resumed once with the CI output. Agents run in their own process groups and outlive the server: a restarted
server must adopt a running agent (or take the result of one that finished while it was down), never start
the same attempt again. At the end every task is merged, each exactly once on main, the ledger shows each
expected invocation once, nothing is left running or checked out, the database is intact, and each task's log
is dense, ordered and holds every line its agents printed.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.faults.support_kill import (
    all_logs,
    integrity,
    ledger_server,
    leftover_checkouts,
    leftover_processes,
    report_line,
)
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer

TASKS = 50
KILLS = 20
RED_EVERY = 5  # every fifth task is red once
LINES = 12
TERMINAL = {"completed", "failed", "cancelled", "needs_attention"}

# CI rejects any task file that still says "bad", naming what it expected (the resumed agent reads it).
CI = 'for f in task-*.txt; do if grep -q bad "$f"; then echo "EXPECTED good in $f"; exit 1; fi; done; echo green'


def agent(port: int) -> str:
    """Reports (task, attempt, why) to the ledger, prints numbered lines over about half a second, writes its file."""
    return (
        'n=$OPTIO_TASK_ID; a=$OPTIO_ATTEMPT; why=first; '
        'if grep -q "EXPECTED good" "$OPTIO_PROMPT_FILE"; then why=ci; fi; '
        + report_line(port, "$n $a $why") + "; "
        f'i=1; while [ $i -le {LINES} ]; do echo "task $n attempt $a line $i"; '
        'if [ $i = 6 ]; then sleep 0.5; fi; i=$((i+1)); done; '
        'if [ $why = first ] && grep -q RED-ONCE "$OPTIO_PROMPT_FILE"; then echo bad > "task-$n.txt"; '
        'else echo good > "task-$n.txt"; fi'
    )


def batch_done(server: OptioServer, ids: list[int]) -> bool:
    """Read from the database file itself: the server may be down or still starting."""
    with sqlite3.connect(server.data_dir / "optio.db", timeout=10) as db:
        done = db.execute("SELECT count(*) FROM repo_tasks WHERE state IN ('completed', 'failed', 'cancelled', "
                          "'needs_attention')").fetchone()[0]
    return int(done) >= len(ids)


def states(server: OptioServer, ids: list[int]) -> dict[int, dict]:
    page = server.api("GET", "/api/repo-tasks", params={"limit": 500}).json()["items"]
    return {t["id"]: t for t in page if t["id"] in ids}


@pytest.mark.timeout(600)
def test_kill9_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(18)
    remote = make_remote(tmp_path)
    server = OptioServer(tmp_path / "data", env={"OPTIO_MAX_CONCURRENT_PER_REPO": "8",
                                                 "OPTIO_MAX_CONCURRENT_RUNS": "8"})
    with ledger_server() as (ledger, port):
        server.start()
        try:
            server.api("POST", "/api/repos", json={"remote_url": str(remote), "name": "crash", "ci_command": CI}
                       ).raise_for_status()
            ids: list[int] = []
            red: set[int] = set()
            for i in range(TASKS):
                is_red = i % RED_EVERY == 0
                resp = server.api("POST", "/api/repo-tasks", json={
                    "repo": "crash", "title": f"task {i}", "prompt": "RED-ONCE write your file" if is_red else
                    "write your file", "agent_config": {"command": agent(port)}})
                assert resp.status_code in (200, 201), resp.text
                ids.append(resp.json()["id"])
                if is_red:
                    red.add(ids[-1])

            # Kill moments are random times after each (re)start, so some land while the server is still
            # starting and recovering, most while it works.
            kills = 0
            while kills < KILLS and not batch_done(server, ids):
                time.sleep(rng.uniform(1.0, 7.0))
                server.kill9()
                kills += 1
                server.spawn()
            server.wait_healthy()
            kills_during_batch = kills
            deadline = time.monotonic() + 240
            final: dict[int, dict] = {}
            while time.monotonic() < deadline:
                final = states(server, ids)
                if len(final) == TASKS and all(t["state"] in TERMINAL for t in final.values()):
                    break
                time.sleep(0.3)
            logs = {task_id: all_logs(server, task_id) for task_id in ids}
        finally:
            server.stop()
        entries = ledger.snapshot()

    assert kills_during_batch == KILLS, f"the batch ended after {kills_during_batch} kills"
    # Every task ends correctly.
    unfinished = {i: (t["state"], t.get("error")) for i, t in final.items() if t["state"] != "completed"}
    assert len(final) == TASKS and not unfinished, (unfinished, server.log()[-3000:])
    assert all(t["pr_state"] == "merged" for t in final.values())
    for task_id in ids:
        assert final[task_id]["resume_count"] == (1 if task_id in red else 0), final[task_id]

    # Agent invocations, counted outside Optio: each expected one exactly once, none other. An attempt whose agent
    # never started (the server died between deciding and launching) leaves no line, and the next attempt number
    # does the same work: what must not repeat is an attempt number, or a piece of work (the first go, the fix).
    assert not [k for k, c in Counter((int(n), int(a)) for n, a, _ in entries).items() if c > 1]
    work = Counter((int(n), why) for n, _, why in entries)
    expected = Counter({(t, "first"): 1 for t in ids}) + Counter({(t, "ci"): 1 for t in red})
    assert work == expected, (work - expected, expected - work)

    # Main gains exactly one squash commit (one parent) per task: its own, or the one its merge-queue batch
    # landed as (the trailers name each task the commit holds).
    subjects = git("log", "--first-parent", "--format=%s", "main", cwd=remote).splitlines()
    assert subjects[-1] == "initial", subjects
    parents = git("log", "--format=%P", "main", cwd=remote).splitlines()
    assert len(parents) == len(subjects) and all(len(p.split()) == 1 for p in parents[:-1])
    landed = git("log", "--format=%(trailers:key=Optio-Task,valueonly)", "main", cwd=remote).split()
    assert Counter(int(t) for t in landed) == Counter(ids), Counter(int(t) for t in landed) - Counter(ids)
    tree = git("ls-tree", "--name-only", "main", cwd=remote).split()
    for task_id in ids:
        assert git("show", f"main:task-{task_id}.txt", cwd=remote) == "good\n"
    assert len([f for f in tree if f.startswith("task-")]) == TASKS

    # Nothing left running or checked out; the database is intact.
    assert not leftover_processes(tmp_path)
    assert not leftover_checkouts(server.data_dir)
    assert integrity(server.data_dir / "optio.db") == "ok"

    # Each task's log: sequence numbers dense and ordered, every line each of its agents printed, in order.
    for task_id in ids:
        items = logs[task_id]
        seqs = [item["seq"] for item in items]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (task_id, seqs)
        for attempt in sorted(int(a) for n, a, _ in entries if int(n) == task_id):
            printed = [item["text"] for item in items if item["attempt"] == attempt and item["stream"] == "stdout"
                       and item["text"].startswith(f"task {task_id} ")]
            assert printed == [f"task {task_id} attempt {attempt} line {i}" for i in range(1, LINES + 1)], \
                (task_id, attempt, printed)
