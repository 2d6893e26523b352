"""Inputs that make an action fail every time end their runs quickly and never jam the other workspaces.

The bad input is planted below the API (the API refuses it up front; the bound must hold whatever the
cause): a NUL byte written straight into task titles in the database, and a base branch deleted on the
remote after the repo was added.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer

BAD = 8
END = {"completed", "failed", "cancelled", "needs_attention"}


def wait_all(server: OptioServer, ids: list[int], states: set[str], timeout: float,
             headers: dict[str, str] | None = None) -> dict[int, dict]:
    deadline = time.monotonic() + timeout
    last: dict[int, dict] = {}
    while time.monotonic() < deadline:
        last = {i: server.api("GET", f"/api/repo-tasks/{i}", headers=headers).json() for i in ids}
        if all(t["state"] in states for t in last.values()):
            return last
        time.sleep(0.2)
    stuck = {i: (t["state"], t.get("error")) for i, t in last.items() if t["state"] not in states}
    raise AssertionError(f"tasks not in {states} after {timeout}s: {stuck}\n{server.log()[-3000:]}")


def test_nul_titles_and_missing_base_branches_end_needs_attention_and_free_their_slots(tmp_path: Path) -> None:
    # The backoff is long enough that a failure is looked at again before its retry is due, even on a loaded
    # machine (a retry already due goes ahead at once, with no retry_scheduled event to assert on).
    server = OptioServer(tmp_path / "data", env={
        "OPTIO_MAX_EXECUTOR_ERRORS": "3", "OPTIO_EXECUTOR_ERROR_BACKOFF_S": "1.5",
        "OPTIO_MAX_CONCURRENT_RUNS": "8", "OPTIO_MAX_CONCURRENT_PER_REPO": "8",
    }).start()
    try:
        nul_remote = make_remote(tmp_path, "nul.git")
        branch_remote = make_remote(tmp_path, "branch.git")
        git("branch", "release", "main", cwd=branch_remote)
        good_remote = make_remote(tmp_path, "good.git")
        assert server.api("POST", "/api/repos", json={"remote_url": str(nul_remote), "name": "nul"}).status_code < 300
        added = server.api("POST", "/api/repos", json={"remote_url": str(branch_remote), "name": "gone",
                                                       "default_branch": "release"})
        assert added.status_code < 300, added.text
        git("branch", "-D", "release", cwd=branch_remote)  # deleted on the remote after the repo was added

        # The agent sleeps a moment, so the titles are poisoned before Optio commits its work.
        nul_ids = []
        for i in range(BAD):
            task = server.api("POST", "/api/repo-tasks", json={
                "repo": "nul", "title": f"nul {i}", "prompt": "p", "max_retries": 0,
                "agent_config": {"command": f"sleep 2; echo {i} > n{i}.txt"}}).json()
            nul_ids.append(task["id"])
        with sqlite3.connect(server.data_dir / "optio.db", timeout=30) as db:
            db.executemany("UPDATE repo_tasks SET title = ? WHERE id = ?",
                           [(f"nul\x00title {i}", i) for i in nul_ids])
        branch_ids = [server.api("POST", "/api/repo-tasks", json={
            "repo": "gone", "title": f"gone {i}", "prompt": "p", "max_retries": 0,
            "agent_config": {"command": "echo x > x.txt"}}).json()["id"] for i in range(BAD)]

        server.api("POST", "/api/workspaces", json={"slug": "other"}).raise_for_status()
        other = {"X-Optio-Workspace": "other"}
        added = server.api("POST", "/api/repos", headers=other, json={"remote_url": str(good_remote), "name": "good"})
        assert added.status_code < 300, added.text
        good = server.api("POST", "/api/repo-tasks", headers=other, json={
            "repo": "good", "title": "normal work", "prompt": "p",
            "agent_config": {"command": "echo fine > fine.txt"}}).json()

        started = time.monotonic()
        done = wait_all(server, [good["id"]], END, timeout=60, headers=other)[good["id"]]
        assert done["state"] == "completed", done

        ended = wait_all(server, nul_ids + branch_ids, END, timeout=60)
        elapsed = time.monotonic() - started
        assert elapsed < 60
        for i in nul_ids:
            assert ended[i]["state"] == "needs_attention", ended[i]
            assert "null byte" in ended[i]["error"] and "3 times" in ended[i]["error"], ended[i]["error"]
        for i in branch_ids:
            assert ended[i]["state"] == "needs_attention", ended[i]
            assert "provision" in ended[i]["error"] and "release" in ended[i]["error"], ended[i]["error"]
        with sqlite3.connect(server.data_dir / "optio.db") as db:
            active = db.execute("SELECT count(*) FROM repo_tasks WHERE state IN ('provisioning', 'running')")
            assert active.fetchone()[0] == 0
            counts = {db.execute("SELECT executor_error_count FROM repo_tasks WHERE id = ?", (i,)).fetchone()[0]
                      for i in nul_ids + branch_ids}
            assert counts == {0}
        events = [e["event"] for e in server.api("GET", f"/api/repo-tasks/{branch_ids[0]}/events").json()]
        # A failed provisioning waits out its backoff back in the queue, not in a run slot (a retry that is
        # already due when the failure is looked at goes ahead at once).
        assert 1 <= events.count("retry_scheduled") <= 2 and events[-1] == "needs_attention", events
    finally:
        server.stop()
