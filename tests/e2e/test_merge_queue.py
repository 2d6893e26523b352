"""Main stays green: CI runs on the merge result, a moved base means a new CI, merges go one at a time.

Real `optio serve` + CLI, real git remotes, real agent and CI processes. After each scenario the CI
command is run on every commit of main (a fresh checkout of each), and every merge commit is checked
to have exactly the tree of a test merge CI passed on, made on exactly its parent.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer

END = {"completed", "failed", "cancelled", "needs_attention"}
# Each PR alone passes; both files together fail.
CI_NOT_BOTH = 'if [ -e a.txt ] && [ -e b.txt ]; then echo "BOTH a.txt AND b.txt EXIST"; exit 1; fi; echo ok'


def new_task(server: OptioServer, *args: str) -> dict:
    return json.loads(server.cli("task", "new", *args, "--json", check=True).stdout)


def main_commits(remote: Path) -> list[tuple[str, str | None]]:
    """(commit, first parent) for each commit of main, newest first."""
    rows = git("log", "--first-parent", "--format=%H %P", "main", cwd=remote).splitlines()
    out = []
    for row in rows:
        parts = row.split()
        out.append((parts[0], parts[1] if len(parts) > 1 else None))
    return out


def tree(remote: Path, rev: str) -> str:
    return git("rev-parse", f"{rev}^{{tree}}", cwd=remote).strip()


def ci_fails_on(remote: Path, commit: str, command: str) -> str | None:
    """Run `command` in a fresh checkout of `commit`; its output when it fails, None when it passes."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["git", "clone", "-q", str(remote), tmp], check=True, capture_output=True)
        subprocess.run(["git", "checkout", "-q", commit], cwd=tmp, check=True, capture_output=True)
        res = subprocess.run(["sh", "-c", command], cwd=tmp, capture_output=True, text=True)
    return None if res.returncode == 0 else res.stdout + res.stderr


def db_rows(server: OptioServer, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(server.data_dir / "optio.db") as db:
        return db.execute(sql, args).fetchall()


def assert_main_green_and_tested(server: OptioServer, remote: Path, command: str, cache: Path) -> None:
    """Every commit of main passes CI, and every merge landed exactly a tree CI passed on over its parent."""
    passing = db_rows(server, "SELECT base_sha, tested_sha FROM ci_runs WHERE status='passing' "
                              "AND tested_sha IS NOT NULL")
    # A merge-queue batch's one CI run tested several PRs merged together onto its base.
    passing += db_rows(server, "SELECT base_sha, tested_sha FROM merge_batches WHERE status IN ('passing', 'landed') "
                               "AND tested_sha IS NOT NULL")
    # The test merge commits live in Optio's cache of the remote, not on the remote itself.
    tested = {(base, git("rev-parse", f"{sha}^{{tree}}", cwd=cache).strip()) for base, sha in passing}
    for commit, parent in main_commits(remote):
        failure = ci_fails_on(remote, commit, command)
        assert failure is None, f"main holds {commit[:10]} on which CI fails: {failure}"
        if parent is not None:
            assert (parent, tree(remote, commit)) in tested, f"{commit[:10]} was not tested on its parent"


def cache_of(server: OptioServer) -> Path:
    caches = list((server.data_dir / "repos").glob("*/cache.git"))
    assert len(caches) == 1, caches
    return caches[0]


def head_of(server: OptioServer, task_id: int) -> str:
    return str(db_rows(server, "SELECT head_sha FROM pull_requests WHERE id=?", pr_id(server, task_id))[0][0])


def events(server: OptioServer, task_id: int) -> list[str]:
    return [e["event"] for e in server.api("GET", f"/api/repo-tasks/{task_id}/events").json()]


def pr_id(server: OptioServer, task_id: int) -> int:
    deadline = time.monotonic() + 60
    while True:
        rows = db_rows(server, "SELECT id FROM pull_requests WHERE task_id=? ORDER BY id DESC", task_id)
        if rows:
            return int(rows[0][0])
        assert time.monotonic() < deadline, "no pull request"
        time.sleep(0.1)


def wait_ci(server: OptioServer, task_id: int, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        task = server.api("GET", f"/api/repo-tasks/{task_id}").json()
        if task.get("ci_status") == status and task["state"] == "pr_opened":
            return task
        assert task["state"] not in END, task
        assert time.monotonic() < deadline, task
        time.sleep(0.1)


def approve(server: OptioServer, task_id: int) -> None:
    server.api("POST", f"/api/prs/{pr_id(server, task_id)}/approve", json={"comment": "ok"},
               headers={"X-Optio-CSRF": "1"}).raise_for_status()


def test_two_prs_green_alone_red_together_never_break_main(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    # Approval lets the test hold both PRs green on the same old main before either merges.
    optio_server.cli("repo", "add", str(remote), "--name", "pair", "--ci-command", CI_NOT_BOTH,
                     "--require-approval", check=True)
    first = new_task(optio_server, "--repo", "pair", "--title", "A", "--prompt", "add a.txt",
                     "--command", "echo a > a.txt")
    # B's agent, resumed with CI output naming both files, gives way: it drops its file for another one.
    second_script = ('if grep -q "BOTH a.txt AND b.txt" "$OPTIO_PROMPT_FILE"; then '
                     'git rm -q b.txt; echo b > b2.txt; else echo b > b.txt; fi')
    second = new_task(optio_server, "--repo", "pair", "--title", "B", "--prompt", "add b.txt",
                      "--command", second_script)
    wait_ci(optio_server, first["id"], "passing")
    wait_ci(optio_server, second["id"], "passing")
    b_head = head_of(optio_server, second["id"])
    first_base = db_rows(optio_server, "SELECT base_sha FROM ci_runs WHERE pr_id=?", pr_id(optio_server, second["id"]))
    assert first_base == [(git("rev-parse", "main", cwd=remote).strip(),)]  # B passed alone, on the old main

    approve(optio_server, first["id"])
    a = optio_server.wait_state(f"/api/repo-tasks/{first['id']}", END, timeout=60)
    assert a["state"] == "completed", a
    approve(optio_server, second["id"])
    # B's green CI was for the old main: it is re-tested on top of A, fails, and its agent gets that output.
    deadline = time.monotonic() + 90
    while True:
        b = optio_server.api("GET", f"/api/repo-tasks/{second['id']}").json()
        if b["resume_count"] >= 1 and head_of(optio_server, second["id"]) != b_head and b["ci_status"] == "passing":
            break
        assert b["state"] not in END, (b, optio_server.log()[-3000:])
        assert time.monotonic() < deadline, b
        time.sleep(0.2)
    approve(optio_server, second["id"])
    b = optio_server.wait_state(f"/api/repo-tasks/{second['id']}", END, timeout=60)
    assert b["state"] == "completed", (b, optio_server.log()[-3000:])

    runs = db_rows(optio_server, "SELECT head_sha, base_sha, status, output FROM ci_runs WHERE pr_id=? ORDER BY id",
                   pr_id(optio_server, second["id"]))
    a_merged = git("rev-parse", "main~1", cwd=remote).strip()
    assert [r[2] for r in runs] == ["passing", "failing", "passing"], runs
    assert runs[1][0] == b_head and runs[1][1] == a_merged  # same head, new base: a new CI
    assert "BOTH a.txt AND b.txt EXIST" in runs[1][3]
    assert events(optio_server, second["id"]).count("ci_failed") == 1
    assert git("log", "--format=%s", "main", cwd=remote).splitlines() == ["B (#2)", "A (#1)", "initial"]
    assert git("ls-tree", "--name-only", "main", cwd=remote).split() == ["README.md", "a.txt", "b2.txt"]
    assert_main_green_and_tested(optio_server, remote, CI_NOT_BOTH, cache_of(optio_server))


def test_twenty_tasks_at_once_every_main_commit_passed_ci_on_its_tree(optio_server: OptioServer,
                                                                       tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    # At most 20 task files may exist together: every merge result is green, so all must land.
    ci = 'n=$(ls task-*.txt 2>/dev/null | wc -l); echo "$n files"; test "$n" -le 20'
    optio_server.cli("repo", "add", str(remote), "--name", "many", "--ci-command", ci, check=True)
    ids = [new_task(optio_server, "--repo", "many", "--title", f"task {i}", "--prompt", "one file",
                    "--command", 'echo done > "task-$OPTIO_TASK_ID.txt"')["id"] for i in range(20)]
    for task_id in ids:
        final = optio_server.wait_state(f"/api/repo-tasks/{task_id}", END, timeout=300)
        assert final["state"] == "completed", (final, optio_server.log()[-3000:])
    merged = db_rows(optio_server, "SELECT count(DISTINCT merged_sha), count(*) FROM pull_requests "
                                   "WHERE state='merged'")[0]
    assert merged[1] == 20 and len(main_commits(remote)) == 1 + merged[0]  # a batch lands as one commit
    # One run per PR plus at most one re-test on the moved base (a batch re-tests several PRs in one run), far
    # from testing every open PR on every new base (about n²/2). Whether PRs wait together long enough to form
    # batches depends on how they arrive, so batching itself is tested where arrival is controlled
    # (tests/integration/test_merge_batches.py) and bench/loop.py reports the count.
    runs = db_rows(optio_server, "SELECT count(*) FROM ci_runs")[0][0]
    runs += db_rows(optio_server, "SELECT count(*) FROM merge_batches WHERE started_at IS NOT NULL")[0][0]
    assert runs <= 2 * len(ids), runs
    assert_main_green_and_tested(optio_server, remote, ci, cache_of(optio_server))


def test_a_person_merging_a_pr_green_on_an_old_base_queues_it_for_a_retest(optio_server: OptioServer,
                                                                           tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "manual", "--ci-command", CI_NOT_BOTH,
                     "--no-auto-merge", check=True)
    first = new_task(optio_server, "--repo", "manual", "--title", "A", "--prompt", "a", "--command", "echo a > a.txt")
    second = new_task(optio_server, "--repo", "manual", "--title", "C", "--prompt", "c", "--command", "echo c > c.txt")
    wait_ci(optio_server, first["id"], "passing")
    wait_ci(optio_server, second["id"], "passing")
    csrf = {"X-Optio-CSRF": "1"}
    merged = optio_server.api("POST", f"/api/prs/{pr_id(optio_server, first['id'])}/merge", json={}, headers=csrf)
    assert merged.status_code == 200, merged.text
    new_main = git("rev-parse", "main", cwd=remote).strip()
    second_pr = pr_id(optio_server, second["id"])
    refused = optio_server.api("POST", f"/api/prs/{second_pr}/merge", json={}, headers=csrf)
    assert refused.status_code == 409 and "queued" in refused.text, refused.text
    assert git("rev-parse", "main", cwd=remote).strip() == new_main  # nothing landed untested
    deadline = time.monotonic() + 60
    while not db_rows(optio_server, "SELECT 1 FROM ci_runs WHERE pr_id=? AND base_sha=? AND status='passing'",
                      second_pr, new_main):
        assert time.monotonic() < deadline, db_rows(optio_server, "SELECT * FROM ci_runs")
        time.sleep(0.2)
    merged = optio_server.api("POST", f"/api/prs/{second_pr}/merge", json={}, headers=csrf)
    assert merged.status_code == 200, merged.text
    assert git("log", "--format=%s", "main", cwd=remote).splitlines()[1:] == ["A (#1)", "initial"]
    assert_main_green_and_tested(optio_server, remote, CI_NOT_BOTH, cache_of(optio_server))
