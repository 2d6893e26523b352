"""The CLI as a person (or a shell pipeline) uses it, against a real `optio serve`: piped output at full width,
PRs named `REPO#N` or `--task ID`, `repo set/remove`, `pr rerun-ci`, stage lines on `--wait`, a piped
`optio login`; and what the loop leaves behind: no branch after a cancel, the ticket in the squash commit."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OPTIO, OptioServer

END = {"completed", "failed", "cancelled", "needs_attention"}
LONG_TITLE = "A deliberately long task title that a terminal table would cut " + "x" * 150 + " THE-END"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OptioServer]:
    s = OptioServer(tmp_path_factory.mktemp("cli") / "data").start()
    try:
        yield s
    finally:
        s.stop()


def piped(server: OptioServer, *args: str, stdin: str | None = None,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI with stdout and stderr going to pipes (not a terminal), as in `optio ... | grep`."""
    return subprocess.run([*OPTIO, "--url", server.url, *args], env=env or server.env(), input=stdin,
                          capture_output=True, text=True, timeout=180)


def add_repo(server: OptioServer, name: str, *extra: str) -> Path:
    """A remote under the directory the server allows local remotes in (the data dir's parent)."""
    remote = make_remote(server.data_dir.parent, f"{name}.git")
    server.cli("repo", "add", str(remote), "--name", name, *extra, check=True)
    return remote


def new_task(server: OptioServer, repo: str, command: str, title: str = "Change") -> dict:
    return json.loads(server.cli("task", "new", "--repo", repo, "--title", title, "--prompt", "p", "--command",
                                 command, "--json", check=True).stdout)


def wait_task(server: OptioServer, task_id: int, states: set[str]) -> dict:
    return server.wait_state(f"/api/repo-tasks/{task_id}", states, timeout=120)


def remote_branches(remote: Path) -> list[str]:
    return git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=remote).split()


def test_piped_tables_keep_every_character(server: OptioServer) -> None:
    add_repo(server, "wide")
    task = new_task(server, "wide", "true", title=LONG_TITLE)
    wait_task(server, task["id"], END)
    res = piped(server, "task", "list")
    assert res.returncode == 0, res.stderr
    rows = [line.split("\t") for line in res.stdout.splitlines()]
    assert rows[0][:4] == ["ID", "REPO", "TITLE", "STATE"]
    row = next(r for r in rows[1:] if r[0] == str(task["id"]))
    assert row[2] == LONG_TITLE and row[3] == "completed"
    repos = piped(server, "repo", "list").stdout
    assert str(server.data_dir.parent / "wide.git") in repos  # the whole remote path, however long


def test_pr_is_named_repo_hash_number_or_task_never_a_bare_number(server: OptioServer) -> None:
    add_repo(server, "refs", "--require-approval", "--no-auto-merge")
    task = new_task(server, "refs", "echo changed > a.txt")
    opened = wait_task(server, task["id"], {"pr_opened"} | END)
    assert opened["state"] == "pr_opened", opened
    number = opened["pr_number"]

    bare = server.cli("pr", "show", str(task["id"]))
    assert bare.returncode == 2
    assert "REPO#N" in bare.stderr and "--task" in bare.stderr and "per repo" in bare.stderr
    no_ref = server.cli("pr", "approve")
    assert no_ref.returncode == 2 and "REPO#N" in no_ref.stderr

    by_number = json.loads(server.cli("pr", "show", f"refs#{number}", "--json", check=True).stdout)
    by_task = json.loads(server.cli("pr", "show", "--task", str(task["id"]), "--json", check=True).stdout)
    assert by_number["id"] == by_task["id"] and by_number["task_id"] == task["id"]
    missing = server.cli("pr", "show", f"wide#{number}")
    assert missing.returncode == 1 and "not found" in missing.stderr

    server.cli("pr", "approve", f"refs#{number}", check=True)
    merged = server.cli("pr", "merge", "--task", str(task["id"]), check=True)
    assert f"refs#{number}" in merged.stdout
    assert wait_task(server, task["id"], END)["state"] == "completed"


def test_rerun_ci_runs_the_repo_ci_again_on_the_head(server: OptioServer) -> None:
    add_repo(server, "flaky", "--ci-command", "date +%s%N", "--require-approval", "--no-auto-merge")
    task = new_task(server, "flaky", "echo changed > a.txt")
    wait_task(server, task["id"], {"pr_opened"})

    def ci_runs() -> list[dict]:
        return json.loads(server.cli("pr", "show", "--task", str(task["id"]), "--json", check=True).stdout)["ci_runs"]

    deadline = time.monotonic() + 60
    while not (ci_runs() and ci_runs()[0]["status"] == "passing"):
        assert time.monotonic() < deadline, ci_runs()
        time.sleep(0.2)
    first = ci_runs()[0]
    pr_number = server.api("GET", f"/api/repo-tasks/{task['id']}").json()["pr_number"]
    res = server.cli("pr", "rerun-ci", f"flaky#{pr_number}", check=True)
    assert "rerun ci done" in res.stdout
    deadline = time.monotonic() + 60
    while True:
        again = ci_runs()
        if again[0]["status"] == "passing" and again[0]["output"] != first["output"]:
            break
        assert time.monotonic() < deadline, again
        time.sleep(0.2)
    assert len(again) == 1 and again[0]["head_sha"] == first["head_sha"]  # the same head, tested once more

    server.cli("pr", "close", "--task", str(task["id"]), check=True)
    closed = server.cli("pr", "rerun-ci", f"flaky#{pr_number}")
    assert closed.returncode == 1 and "closed" in closed.stderr


def test_repo_set_changes_the_loop_settings(server: OptioServer) -> None:
    add_repo(server, "settings")
    server.cli("repo", "set", "settings", "--ci-command", "make test", "--no-auto-merge", "--require-approval",
               "--review-command", "test -f ok", "--review-prompt", "be strict", check=True)
    repo = json.loads(server.cli("repo", "show", "settings", "--json", check=True).stdout)
    assert repo["ci_command"] == "make test" and repo["auto_merge"] is False and repo["require_approval"] is True
    assert repo["review_agent_type"] == "script" and repo["review_agent_config"] == {"command": "test -f ok"}
    assert repo["review_prompt"] == "be strict"
    server.cli("repo", "set", "settings", "--ci-command", "", "--auto-merge", check=True)
    repo = json.loads(server.cli("repo", "show", "settings", "--json", check=True).stdout)
    assert repo["ci_command"] is None and repo["auto_merge"] is True and repo["require_approval"] is True
    nothing = server.cli("repo", "set", "settings")
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr


def test_cancel_deletes_the_branch_and_remove_waits_for_unfinished_tasks(server: OptioServer) -> None:
    remote = add_repo(server, "gone", "--require-approval", "--no-auto-merge")
    task = new_task(server, "gone", "echo changed > a.txt")
    wait_task(server, task["id"], {"pr_opened"})
    branch = f"optio/{task['id']}"
    assert branch in remote_branches(remote)
    repo_id = server.api("GET", "/api/repos/gone").json()["id"]
    cache = server.data_dir / "repos" / str(repo_id)
    assert cache.exists()

    refused = server.cli("repo", "remove", "gone")
    assert refused.returncode == 1 and "unfinished" in refused.stderr and "task cancel" in refused.stderr
    assert server.api("DELETE", "/api/repos/gone").status_code == 409

    server.cli("task", "cancel", str(task["id"]), check=True)
    assert wait_task(server, task["id"], END)["state"] == "cancelled"
    deadline = time.monotonic() + 30
    while branch in remote_branches(remote):
        assert time.monotonic() < deadline, remote_branches(remote)
        time.sleep(0.2)
    assert remote_branches(remote) == ["main"]

    server.cli("repo", "remove", "gone", check=True)
    assert server.api("GET", "/api/repos/gone").status_code == 404
    assert server.api("GET", f"/api/repo-tasks/{task['id']}").status_code == 404
    assert not cache.exists()
    # The name is free again, and the new repo works from a fresh cache.
    server.cli("repo", "add", str(remote), "--name", "gone", check=True)
    assert server.api("GET", "/api/repos/gone").status_code == 200


def test_wait_prints_each_stage_to_stderr_and_only_json_to_stdout(server: OptioServer) -> None:
    add_repo(server, "stages", "--ci-command", "true")
    res = piped(server, "task", "new", "--repo", "stages", "--title", "Staged", "--prompt", "p", "--command",
                "echo changed > a.txt", "--wait", "--json")
    assert res.returncode == 0, res.stderr
    final = json.loads(res.stdout)  # stdout is the final object alone
    assert final["state"] == "completed" and final["pr_state"] == "merged"
    lines = [line for line in res.stderr.splitlines() if line.startswith(f"task {final['id']}: ")]
    stages = [line.split(": ", 1)[1] for line in lines]
    assert len(stages) == len(set(stages)), stages  # one line per change, no repeats
    assert stages[-1].startswith("completed") and "merged" in stages[-1]
    assert any(s.startswith("pr_opened") for s in stages), stages
    order = [s.split(" ")[0] for s in stages]
    assert order.index("pr_opened") < order.index("completed")


def test_job_run_wait_prints_stages(server: OptioServer) -> None:
    server.cli("job", "create", "--name", "hello", "--prompt", "p", "--command", "echo hi", check=True)
    res = piped(server, "job", "run", "hello", "--wait")
    assert res.returncode == 0, res.stderr
    assert any(line.startswith("run ") and ": completed" in line for line in res.stderr.splitlines()), res.stderr
    assert "completed" in res.stdout


def test_login_reads_a_piped_key_without_warnings(server: OptioServer, tmp_path: Path) -> None:
    env = {k: v for k, v in server.env().items() if k != "OPTIO_TOKEN"}
    env["OPTIO_CONFIG_DIR"] = str(tmp_path / "cfg")
    res = piped(server, "login", stdin=server.admin_key + "\n", env=env)
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr and server.admin_key not in res.stdout + res.stderr
    assert "signed in as" in res.stdout
    assert json.loads((tmp_path / "cfg" / "cli.json").read_text())["token"] == server.admin_key
    assert piped(server, "whoami", env=env).returncode == 0  # the stored key is used
    empty = piped(server, "login", stdin="", env={**env, "OPTIO_CONFIG_DIR": str(tmp_path / "cfg2")})
    assert empty.returncode == 2 and "no API key" in empty.stderr


def test_squash_commit_names_the_ticket_it_closes(server: OptioServer) -> None:
    remote = add_repo(server, "tickets", "--ci-command", "true")
    ticket = json.loads(server.cli("ticket", "new", "--title", "Add a file", "--body", "please", "--repo", "tickets",
                                   "--json", check=True).stdout)
    task = json.loads(server.cli("ticket", "work", str(ticket["number"]), "--command", "echo t > t.txt", "--json",
                                 check=True).stdout)
    final = wait_task(server, task["id"], END)
    assert final["state"] == "completed", final
    message = git("log", "-1", "--format=%B", "main", cwd=remote)
    assert f"Closes ticket #{ticket['number']}" in message and f"Optio task #{task['id']}" in message
