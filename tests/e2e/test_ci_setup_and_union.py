"""The loop tells the truth: a CI that cannot start goes to a person, a union-merged file is no conflict.

Real `optio serve` and CLI, real git remotes, real agent and CI processes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer

END = {"completed", "failed", "cancelled", "needs_attention"}


def agent_starts(server: OptioServer, task_id: int) -> int:
    with sqlite3.connect(server.data_dir / "optio.db") as db:
        return db.execute("SELECT count(*) FROM agent_processes WHERE run_kind='repo_task' AND run_id=?",
                          (task_id,)).fetchone()[0]


def ci_runs(server: OptioServer, task_id: int) -> list[tuple[str, str | None]]:
    with sqlite3.connect(server.data_dir / "optio.db") as db:
        return db.execute("SELECT c.status, c.failure_kind FROM ci_runs c JOIN repo_tasks t ON t.pr_id = c.pr_id "
                          "WHERE t.id=? ORDER BY c.id", (task_id,)).fetchall()


def events(server: OptioServer, task_id: int) -> list[str]:
    return [e["event"] for e in server.api("GET", f"/api/repo-tasks/{task_id}/events").json()]


def wait_for_file(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def new_task(server: OptioServer, *args: str) -> dict:
    return json.loads(server.cli("task", "new", *args, "--json", check=True).stdout)


def test_a_ci_command_that_does_not_exist_needs_attention_after_one_run(
    optio_server: OptioServer, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "broken-ci", "--ci-command", "does-not-exist",
                     check=True)
    task = new_task(optio_server, "--repo", "broken-ci", "--title", "Add a file", "--prompt", "p",
                    "--command", "echo hello > hello.txt")

    final = optio_server.wait_state(f"/api/repo-tasks/{task['id']}", END, timeout=90)

    assert final["state"] == "needs_attention", (final, optio_server.log()[-3000:])
    assert final["resume_count"] == 0 and final["ci_status"] == "error"
    assert agent_starts(optio_server, task["id"]) == 1
    assert ci_runs(optio_server, task["id"]) == [("error", "not_found")]
    assert "CI could not run" in final["error"] and "not found (exit 127)" in final["error"]
    assert "does-not-exist" in final["error"]  # the shell's own words, from the CI output
    names = events(optio_server, task["id"])
    assert "needs_attention" in names and "ci_failed" not in names and "resumed" not in names

    shown = optio_server.cli("pr", "show", "broken-ci#1", check=True).stdout
    assert "error (exit 127" in shown and "could not run: not_found" in shown
    assert "CI output of" in shown and "does-not-exist: not found" in shown
    as_json = json.loads(optio_server.cli("pr", "show", "broken-ci#1", "--json",
                                          check=True).stdout)
    assert as_json["ci_runs"][-1]["failure_kind"] == "not_found"
    assert as_json["ci_runs"][-1]["duration_s"] is not None


def test_two_tasks_appending_to_a_union_file_both_merge_without_a_conflict(
    optio_server: OptioServer, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path, files={".gitattributes": "CHANGES merge=union\n", "CHANGES": "- base\n"})
    optio_server.cli("repo", "add", str(remote), "--name", "changelog", "--ci-command", "cat CHANGES", check=True)
    # B branches from the old main and appends only once A's entry is on the remote's main, so the two
    # edits meet at the same place in the file: a text merge would conflict, a union merge does not.
    first = new_task(optio_server, "--repo", "changelog", "--title", "A", "--prompt", "A",
                     "--command", 'until [ -f "$HOME/gate" ]; do sleep 0.1; done; echo "- A" >> CHANGES')
    second = new_task(optio_server, "--repo", "changelog", "--title", "B", "--prompt", "B", "--command",
                      'touch "$HOME/started"; '
                      f'until git --git-dir={remote} show main:CHANGES 2>/dev/null | grep -q -- "- A"; '
                      'do sleep 0.2; done; echo "- B" >> CHANGES')
    home = optio_server.data_dir / "homes"
    wait_for_file(home / f"repo_task-{second['id']}" / "started")
    (home / f"repo_task-{first['id']}" / "gate").touch()

    a = optio_server.wait_state(f"/api/repo-tasks/{first['id']}", END, timeout=90)
    b = optio_server.wait_state(f"/api/repo-tasks/{second['id']}", END, timeout=120)

    assert a["state"] == "completed", a
    assert b["state"] == "completed", (b, optio_server.log()[-3000:])
    assert b["resume_count"] == 0 and agent_starts(optio_server, second["id"]) == 1
    assert "conflict" not in events(optio_server, second["id"])
    assert git("show", "main:CHANGES", cwd=remote) == "- base\n- A\n- B\n"


def test_a_ci_killed_by_its_timeout_needs_attention_without_resuming(tmp_path: Path) -> None:
    server = OptioServer(tmp_path / "data", env={"OPTIO_CI_TIMEOUT_S": "2"}).start()
    try:
        remote = make_remote(tmp_path)
        server.cli("repo", "add", str(remote), "--name", "slow-ci", "--ci-command",
                   "echo running the suite; sleep 60", check=True)
        task = new_task(server, "--repo", "slow-ci", "--title", "Add a file", "--prompt", "p",
                        "--command", "echo hello > hello.txt")

        final = server.wait_state(f"/api/repo-tasks/{task['id']}", END, timeout=90)

        assert final["state"] == "needs_attention", (final, server.log()[-3000:])
        assert agent_starts(server, task["id"]) == 1 and final["resume_count"] == 0
        assert ci_runs(server, task["id"]) == [("error", "timeout")]
        assert "killed by its timeout" in final["error"] and "running the suite" in final["error"]
        shown = server.cli("pr", "show", "slow-ci#1", check=True).stdout
        assert "could not run: timeout" in shown and "timed out after 2s" in shown
    finally:
        server.stop()
