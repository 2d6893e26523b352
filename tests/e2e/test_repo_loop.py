"""The closed loop end to end: `optio serve` + the real CLI, real git remotes, real agent and CI processes."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer


@pytest.fixture(scope="module")
def optio_server(module_optio_server: OptioServer) -> OptioServer:
    """Shared by the module's tests: each adds its own repo (PR numbers count per repo) and reads its own tasks."""
    return module_optio_server


def main_log(remote: Path) -> list[str]:
    return git("log", "--format=%s", "main", cwd=remote).splitlines()


def show(remote: Path, path: str) -> str:
    return git("show", f"main:{path}", cwd=remote)


def task_json(server: OptioServer, task_id: int) -> dict:
    return json.loads(server.cli("task", "show", str(task_id), "--json", check=True).stdout)


def events(server: OptioServer, task_id: int) -> list[str]:
    return [e["event"] for e in server.api("GET", f"/api/repo-tasks/{task_id}/events").json()]


def agent_starts(server: OptioServer, task_id: int) -> int:
    with sqlite3.connect(server.data_dir / "optio.db") as db:
        return db.execute("SELECT count(*) FROM agent_processes WHERE run_kind='repo_task' AND run_id=?",
                          (task_id,)).fetchone()[0]


def run_home(server: OptioServer, task_id: int) -> Path:
    """The task's own HOME on the host: the one place its sandboxed agent and this test both reach."""
    return server.data_dir / "homes" / f"repo_task-{task_id}"


def log_texts(server: OptioServer, task_id: int) -> list[str]:
    return [item["text"] for item in server.api("GET", f"/api/repo-tasks/{task_id}/logs").json()["items"]]


def new_task(server: OptioServer, *args: str) -> dict:
    res = server.cli("task", "new", *args, "--json", check=True)
    return json.loads(res.stdout)


def wait_for_file(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def wait_task(server: OptioServer, task_id: int, states: set[str], timeout: float = 90) -> dict:
    return server.wait_state(f"/api/repo-tasks/{task_id}", states, timeout=timeout)


CI_NEEDS_OK = (
    'c=$(cat fixed.txt 2>/dev/null); if [ "$c" = ok ]; then echo pass; else echo "EXPECTED ok GOT $c"; exit 1; fi'
)
AGENT_READS_CI = 'if grep -q "EXPECTED ok" "$OPTIO_PROMPT_FILE"; then echo ok > fixed.txt; else echo no > fixed.txt; fi'
END = {"completed", "failed", "cancelled", "needs_attention"}


def test_red_ci_resumes_agent_with_output_until_merged(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "demo", "--ci-command", CI_NEEDS_OK, check=True)
    res = optio_server.cli("task", "new", "--repo", "demo", "--title", "Make CI green", "--prompt", "fix fixed.txt",
                           "--command", AGENT_READS_CI, "--wait", "--json", timeout=120)
    task = json.loads(res.stdout)
    assert res.returncode == 0, (task, optio_server.log()[-3000:])
    assert task["state"] == "completed" and task["pr_state"] == "merged"
    assert task["resume_count"] == 1 and task["ci_status"] == "passing"
    shown = task_json(optio_server, task["id"])
    for key in ("id", "state", "pr_number", "pr_state", "ci_status", "review_status", "resume_count", "cost_usd",
                "error"):
        assert key in shown
    assert main_log(remote) == ["Make CI green (#1)", "initial"]
    assert show(remote, "fixed.txt") == "ok\n"
    names = events(optio_server, task["id"])
    assert names.count("ci_failed") == 1 and names.count("resumed") == 1
    assert names.index("ci_failed") < names.index("resumed") < names.index("merged")
    assert not (optio_server.data_dir / "worktrees" / f"task-{task['id']}").exists()


def test_review_agent_requests_changes_then_approves(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    review = ('if [ "$(tail -c 1 "$OPTIO_PR_HEAD_DIR/out.txt" | od -An -tx1 | tr -d " ")" = 0a ]; then '
              'echo "looks good"; exit 0; fi; '
              'echo "please add a trailing newline"; exit 1')
    optio_server.cli("repo", "add", str(remote), "--name", "reviewed", "--require-approval",
                     "--review-command", review, check=True)
    agent = ('if grep -q "please add a trailing newline" "$OPTIO_PROMPT_FILE"; then '
             'echo "attempt $OPTIO_ATTEMPT saw the review"; printf "done\\n" > out.txt; '
             'else echo "attempt $OPTIO_ATTEMPT saw no review"; printf "done" > out.txt; fi')
    res = optio_server.cli("task", "new", "--repo", "reviewed", "--title", "Write out.txt", "--prompt", "write it",
                           "--command", agent, "--wait", "--json", timeout=120)
    task = json.loads(res.stdout)
    assert task["state"] == "completed", (task, optio_server.log()[-3000:])
    lines = log_texts(optio_server, task["id"])
    assert "attempt 1 saw no review" in lines and "attempt 2 saw the review" in lines, lines
    assert show(remote, "out.txt") == "done\n"
    pr = json.loads(optio_server.cli("pr", "show", "--task", str(task["id"]), "--json", check=True).stdout)
    assert [r["verdict"] for r in pr["reviews"]] == ["request_changes", "approve"]
    assert all(r["author"].startswith("review-agent") for r in pr["reviews"])


def test_conflict_after_first_merge_is_resumed_to_rebase(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path, files={"shared.txt": "base\n"})
    optio_server.cli("repo", "add", str(remote), "--name", "shared", check=True)
    # A waits until B's agent runs (the test passes the word on through their HOMEs), so B's branch starts
    # from the old main and collides with A's change.
    first = new_task(optio_server, "--repo", "shared", "--title", "A", "--prompt", "A",
                     "--command", 'until [ -f "$HOME/gate" ]; do sleep 0.1; done; echo A > shared.txt')
    second_script = (
        'if grep -qi "conflict" "$OPTIO_PROMPT_FILE"; then '
        'git fetch -q origin && (git rebase origin/main || '
        '{ printf "A\\nB\\n" > shared.txt; git add shared.txt; GIT_EDITOR=true git rebase --continue; }); '
        'else touch "$HOME/started"; '
        # The clone's origin/* are refreshed by Optio at each launch, not live: watch the remote itself.
        f"until git --git-dir={remote} show main:shared.txt 2>/dev/null | grep -q A; do sleep 0.2; done; "
        'echo B > shared.txt; fi'
    )
    second = new_task(optio_server, "--repo", "shared", "--title", "B", "--prompt", "B", "--command", second_script)
    wait_for_file(run_home(optio_server, second["id"]) / "started")
    (run_home(optio_server, first["id"]) / "gate").touch()
    a = wait_task(optio_server, first["id"], END)
    b = wait_task(optio_server, second["id"], END, timeout=120)
    assert a["state"] == "completed", a
    assert b["state"] == "completed", (b, optio_server.log()[-3000:])
    assert "conflict" in events(optio_server, second["id"])
    assert show(remote, "shared.txt") == "A\nB\n"
    assert main_log(remote) == ["B (#2)", "A (#1)", "initial"]


def test_never_green_ends_needs_attention_at_the_cap(tmp_path: Path) -> None:
    server = OptioServer(tmp_path / "data", env={"OPTIO_MAX_AUTO_RESUMES": "2"}).start()
    try:
        remote = make_remote(tmp_path)
        server.cli("repo", "add", str(remote), "--name", "red", "--ci-command", "echo always red; exit 1",
                   check=True)
        task = new_task(server, "--repo", "red", "--title", "Hopeless", "--prompt", "p",
                        "--command", "date +%s%N > attempt.txt")
        final = wait_task(server, task["id"], END, timeout=120)
        assert final["state"] == "needs_attention", final
        assert "2" in final["error"] and "resume" in final["error"]
        starts = agent_starts(server, task["id"])
        assert starts == 3  # the first run and two resumes
        time.sleep(2)
        assert agent_starts(server, task["id"]) == starts
        assert task_json(server, task["id"])["state"] == "needs_attention"
    finally:
        server.stop()


def test_same_failure_on_same_commit_is_not_resumed_twice(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "stuck", "--ci-command", "exit 1", check=True)
    task = new_task(optio_server, "--repo", "stuck", "--title", "Same", "--prompt", "p",
                    "--command", "echo same > same.txt")
    final = wait_task(optio_server, task["id"], END)
    assert final["state"] == "needs_attention" and final["resume_count"] == 1
    assert agent_starts(optio_server, task["id"]) == 2


def test_depends_on_waits_for_parent(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "deps", check=True)
    parent = new_task(optio_server, "--repo", "deps", "--title", "Parent", "--prompt", "p",
                      "--command", 'until [ -f "$HOME/gate" ]; do sleep 0.1; done; echo p > parent.txt')
    gate = run_home(optio_server, parent["id"]) / "gate"
    child = new_task(optio_server, "--repo", "deps", "--title", "Child", "--prompt", "c",
                     "--command", "test -f parent.txt && echo c > child.txt", "--depends-on", str(parent["id"]))
    wait_task(optio_server, child["id"], {"waiting_on_deps"})
    wait_task(optio_server, parent["id"], {"running"})
    assert task_json(optio_server, child["id"])["state"] == "waiting_on_deps"
    gate.touch()
    assert wait_task(optio_server, parent["id"], END)["state"] == "completed"
    final = wait_task(optio_server, child["id"], END)
    assert final["state"] == "completed", final
    assert show(remote, "child.txt") == "c\n"


def test_failed_parent_fails_child(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "deps2", check=True)
    parent = new_task(optio_server, "--repo", "deps2", "--title", "Parent", "--prompt", "p", "--command", "exit 3",
                      "--max-retries", "0")
    child = new_task(optio_server, "--repo", "deps2", "--title", "Child", "--prompt", "c", "--command", "true",
                     "--depends-on", str(parent["id"]))
    assert wait_task(optio_server, parent["id"], END)["state"] == "failed"
    final = wait_task(optio_server, child["id"], END)
    assert final["state"] == "failed" and f"#{parent['id']}" in final["error"]


def test_agent_without_changes_completes_without_pr(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "noop", check=True)
    task = new_task(optio_server, "--repo", "noop", "--title", "Nothing", "--prompt", "p", "--command", "true")
    final = wait_task(optio_server, task["id"], END)
    assert final["state"] == "completed" and final["pr_number"] is None and final["note"]
    assert main_log(remote) == ["initial"]


def test_human_review_and_manual_merge(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "manual", "--require-approval", "--no-auto-merge",
                     check=True)
    agent = ('if grep -q "use uppercase" "$OPTIO_PROMPT_FILE"; then echo HELLO > hello.txt; '
             'else echo hello > hello.txt; fi')
    task = new_task(optio_server, "--repo", "manual", "--title", "Hello", "--prompt", "p", "--command", agent)
    wait_task(optio_server, task["id"], {"pr_opened"})
    optio_server.cli("pr", "request-changes", "--task", str(task["id"]), "--comment", "use uppercase", check=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pr = json.loads(optio_server.cli("pr", "show", "--task", str(task["id"]), "--json", check=True).stdout)
        shown = task_json(optio_server, task["id"])
        # a person asked for this resume: it is counted apart from the automatic ones
        if shown["human_resumes"] == 1 and shown["resume_count"] == 0 and shown["state"] == "pr_opened":
            break
        time.sleep(0.2)
    optio_server.cli("pr", "approve", "--task", str(task["id"]), check=True)
    time.sleep(1)
    assert task_json(optio_server, task["id"])["state"] == "pr_opened"  # no auto-merge: waits for a person
    optio_server.cli("pr", "merge", "--task", str(task["id"]), check=True)
    assert wait_task(optio_server, task["id"], END)["state"] == "completed"
    assert show(remote, "hello.txt") == "HELLO\n"
    pr = json.loads(optio_server.cli("pr", "show", f"manual#{pr['number']}", "--json", check=True).stdout)
    assert pr["state"] == "merged"


@pytest.mark.parametrize("phase", ["running", "ci_pending"])
def test_kill9_mid_loop_reaches_same_end(tmp_path: Path, phase: str) -> None:
    """SIGKILL the server while the agent runs, or while CI is pending; after a restart the task still merges,
    the agent ran exactly once, and no worktree is left behind."""
    server = OptioServer(tmp_path / "data").start()
    try:
        remote = make_remote(tmp_path)
        ci = "sleep 3; test -f work.txt" if phase == "ci_pending" else "test -f work.txt"
        server.cli("repo", "add", str(remote), "--name", "crash", "--ci-command", ci, check=True)
        agent = 'echo run >> "$HOME/agent-runs"; ' + ("sleep 3; " if phase == "running" else "") + "echo w > work.txt"
        task = new_task(server, "--repo", "crash", "--title", "Survive", "--prompt", "p", "--command", agent)
        runs_file = run_home(server, task["id"]) / "agent-runs"
        if phase == "running":
            wait_task(server, task["id"], {"running"})
            time.sleep(0.5)
        else:
            wait_task(server, task["id"], {"pr_opened"})
            assert task_json(server, task["id"])["ci_status"] == "pending"
        server.kill9()
        server.start()
        final = wait_task(server, task["id"], END, timeout=120)
        assert final["state"] == "completed", (final, server.log()[-3000:])
        assert runs_file.read_text().count("run") == 1
        assert show(remote, "work.txt") == "w\n"
        # The worktree is removed right after the commit that completes the task, so give that a moment.
        worktrees = server.data_dir / "worktrees"
        deadline = time.monotonic() + 15
        while worktrees.exists() and any(worktrees.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not worktrees.exists() or not any(worktrees.iterdir()), list(worktrees.iterdir())
        listed = git("worktree", "list", "--porcelain", cwd=server.data_dir / "repos" / "1" / "cache.git")
        assert listed.count("worktree ") == 1  # only the bare cache itself
    finally:
        server.stop()


def test_ticket_handed_to_agent_is_closed_when_its_pr_merges(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "tracked", check=True)
    ticket = json.loads(optio_server.cli("ticket", "new", "--title", "Add a changelog", "--body", "CHANGELOG.md please",
                                         "--repo", "tracked", "--json", check=True).stdout)
    task = json.loads(optio_server.cli("ticket", "work", str(ticket["number"]), "--command",
                                       'grep -q CHANGELOG "$OPTIO_PROMPT_FILE" && echo "# Changes" > CHANGELOG.md',
                                       "--json", check=True).stdout)
    assert wait_task(optio_server, task["id"], END)["state"] == "completed"
    closed = json.loads(optio_server.cli("ticket", "show", str(ticket["number"]), "--json", check=True).stdout)
    assert closed["state"] == "closed" and closed["task_id"] == task["id"]
    assert f"#{task['id']}" in closed["closed_reason"]
    assert show(remote, "CHANGELOG.md") == "# Changes\n"


def test_priority_decides_who_gets_the_repo_slot(tmp_path: Path) -> None:
    """One slot per repo: with a low- and a high-priority task queued behind a running one, the high one goes
    first when the slot frees, though it was created later."""
    server = OptioServer(tmp_path / "data", env={"OPTIO_MAX_CONCURRENT_PER_REPO": "1"}).start()
    try:
        remote = make_remote(tmp_path)
        server.cli("repo", "add", str(remote), "--name", "prio", check=True)
        # Each agent notes when it ran in its own HOME; the test reads them all.
        ran = 'date +%s%N > "$HOME/ran"'
        first = new_task(server, "--repo", "prio", "--title", "first", "--prompt", "p",
                         "--command", f'until [ -f "$HOME/gate" ]; do sleep 0.1; done; {ran}')
        wait_task(server, first["id"], {"running"})
        low = new_task(server, "--repo", "prio", "--title", "low", "--prompt", "p", "--priority", "0",
                       "--command", f"{ran}; echo low > low.txt")
        high = new_task(server, "--repo", "prio", "--title", "high", "--prompt", "p", "--priority", "5",
                        "--command", f"{ran}; echo high > high.txt")
        wait_task(server, low["id"], {"queued"})
        wait_task(server, high["id"], {"queued"})
        (run_home(server, first["id"]) / "gate").touch()
        tasks = {"first": first, "low": low, "high": high}
        for task in tasks.values():
            assert wait_task(server, task["id"], END)["state"] == "completed"
        when = {name: int((run_home(server, task["id"]) / "ran").read_text()) for name, task in tasks.items()}
        assert sorted(when, key=when.__getitem__) == ["first", "high", "low"]
    finally:
        server.stop()


def test_a_deep_queue_is_woken_slot_by_slot_not_polled(tmp_path: Path) -> None:
    """One slot per repo and tasks queued behind a running one: only the next in line keeps looking for the
    slot; the ones further back wait on a backstop far in the future, and still each starts as soon as the
    slot before it frees, because a freed slot wakes the next in line."""
    server = OptioServer(tmp_path / "data", env={"OPTIO_MAX_CONCURRENT_PER_REPO": "1"}).start()
    try:
        remote = make_remote(tmp_path)
        server.cli("repo", "add", str(remote), "--name", "deep", check=True)
        first = new_task(server, "--repo", "deep", "--title", "first", "--prompt", "p",
                         "--command", 'until [ -f "$HOME/gate" ]; do sleep 0.1; done; echo 0 > f0.txt')
        wait_task(server, first["id"], {"running"})
        behind = [new_task(server, "--repo", "deep", "--title", f"t{i}", "--prompt", "p",
                           "--command", f"echo {i} > f{i}.txt") for i in range(1, 5)]
        for task in behind:
            wait_task(server, task["id"], {"queued"})
        db = server.data_dir / "optio.db"

        def next_looks() -> dict[int, float]:
            with sqlite3.connect(db, timeout=30) as conn:
                rows = conn.execute("SELECT run_id, (julianday(not_before) - julianday('now')) * 86400 FROM "
                                    "reconcile_queue WHERE kind = 'repo_task' AND claimed_until IS NULL").fetchall()
            return {int(run_id): float(seconds) for run_id, seconds in rows}

        head, *back = behind
        deadline = time.monotonic() + 30
        looks = next_looks()
        while time.monotonic() < deadline and not all(t["id"] in looks and looks[t["id"]] > 20 for t in back):
            time.sleep(0.1)
            looks = next_looks()
        assert all(looks.get(t["id"], 0) > 20 for t in back), looks  # the ones further back: only the backstop
        backstop_at = time.time() + min(looks[t["id"]] for t in back)
        looks = next_looks()
        assert looks.get(head["id"], 0) <= 2.5, looks  # the next in line looks every couple of seconds

        (run_home(server, first["id"]) / "gate").touch()
        for task in [first, *behind]:
            assert wait_task(server, task["id"], END)["state"] == "completed"
        with sqlite3.connect(db, timeout=30) as conn:
            started = conn.execute("SELECT max(created_at) FROM run_events WHERE run_kind = 'repo_task' AND "
                                   "event = 'provisioning'").fetchone()[0]
        last_start = datetime.fromisoformat(started).replace(tzinfo=UTC).timestamp()
        assert last_start < backstop_at, "the tasks further back started on the backstop, not when woken"
    finally:
        server.stop()
