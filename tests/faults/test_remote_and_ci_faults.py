"""The git remote gone for 30 s while a task needs it, and a CI command that hangs past its timeout.

Neither may leave a task stuck: the unreachable remote is waited out (the task merges once it is back, nothing
failed for it), and the hung CI is killed with everything it started and ends the task with a clear reason.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.faults.support_env import END, marked_pids, new_marker, new_task, wait_for
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer

from optio.forge.base import ForgeBusy
from optio.forge.git import RepoCache
from optio.forge.gitcmd import GitError

OUTAGE_S = 30.0
GATED_AGENT = 'touch "$HOME/ready"; until [ -f "$HOME/gate" ]; do sleep 0.1; done; echo changed > change.txt'


def test_remote_unreachable_for_30s_is_waited_out(tmp_path: Path) -> None:
    # The PR watcher looks again for CI left pending every few seconds instead of every 30.
    server = OptioServer(tmp_path / "data", env={"OPTIO_WATCH_INTERVAL_S": "2"}).start()
    try:
        remote = make_remote(tmp_path)
        away = remote.with_name("remote-away.git")
        server.cli("repo", "add", str(remote), "--name", "flaky-remote", "--ci-command", "test -f change.txt",
                   check=True)
        task = new_task(server, "--repo", "flaky-remote", "--title", "Change", "--prompt", "p",
                        "--command", GATED_AGENT)
        home = server.data_dir / "homes" / f"repo_task-{task['id']}"
        wait_for(lambda: (home / "ready").exists(), "the agent to start")

        remote.rename(away)  # unreachable: every fetch and push fails until it is back
        gone = time.monotonic()
        (home / "gate").touch()
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - gone)))
        shown = server.api("GET", f"/api/repo-tasks/{task['id']}").json()
        assert shown["state"] not in END, ("gave up while the remote was away", shown, server.log()[-3000:])
        away.rename(remote)

        final = server.wait_state(f"/api/repo-tasks/{task['id']}", END, timeout=90)
        assert (final["state"], final["pr_state"]) == ("completed", "merged"), (final, server.log()[-3000:])
        assert git("log", "--format=%s", "main", cwd=remote).splitlines() == ["Change (#1)", "initial"]
        assert git("show", "main:change.txt", cwd=remote) == "changed\n"
        assert "git remote unreachable" in server.log()  # it waited for the remote, and said so
    finally:
        server.stop()


def test_ci_that_hangs_past_its_timeout_is_killed_and_says_so(tmp_path: Path) -> None:
    marker = new_marker()
    # Ignores SIGTERM, forks a child that ignores it too, and never ends by itself.
    hang = (f"export FAULT_MARKER={marker}; trap '' TERM; (trap '' TERM; while :; do sleep 1; done) & "
            "echo running the suite; while :; do sleep 1; done")
    server = OptioServer(tmp_path / "data", env={"OPTIO_CI_TIMEOUT_S": "3"}).start()
    try:
        remote = make_remote(tmp_path)
        server.cli("repo", "add", str(remote), "--name", "hung-ci", "--ci-command", hang, check=True)
        task = new_task(server, "--repo", "hung-ci", "--title", "Add", "--prompt", "p",
                        "--command", "echo hello > hello.txt")
        wait_for(lambda: marked_pids(marker), "the CI command to start")

        final = server.wait_state(f"/api/repo-tasks/{task['id']}", END, timeout=60)

        assert final["state"] == "needs_attention", (final, server.log()[-3000:])
        assert "killed by its timeout" in final["error"] and "running the suite" in final["error"]
        wait_for(lambda: not marked_pids(marker), "every process of the hung CI to end", timeout=15)
        shown = server.cli("pr", "show", "hung-ci#1", check=True).stdout
        assert "timed out after 3s" in shown
    finally:
        server.stop()


def test_a_remote_that_worked_and_is_gone_is_busy_one_never_reached_is_an_error(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    cache = RepoCache(str(remote), tmp_path / "cache")
    cache.ensure()
    remote.rename(remote.with_name("away.git"))
    with pytest.raises(ForgeBusy, match="git remote unreachable"):
        cache.fetch()
    # Registered with a path that never worked: the operator's mistake to see, not an outage to wait out.
    never = RepoCache(str(tmp_path / "missing.git"), tmp_path / "cache-2")
    with pytest.raises(GitError):
        never.ensure()
