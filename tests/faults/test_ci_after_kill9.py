"""`kill -9` of the server while a PR's CI runs: the CI command outlives it (its own session), and the restarted
server runs that CI again. The old command must not go on beside the new one: the restarted server ends it
before it reruns the CI, and the CI completes once. A SIGTERM instead: the server ends the command itself before
it exits, records no result for it, and the restarted server runs it again.

The CI command reports its start and end (with a run id of its own) to a ledger in this test process, and waits
for a gate (a port this test opens) before it ends, so it is mid-run at the kill for as long as the test needs.
"""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import psutil
from tests.faults.support_env import END, marked_pids, new_marker, new_task, wait_for
from tests.faults.support_kill import ledger_server, report_line
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer, free_port


def ci_shells(marker: str) -> set[int]:
    """The CI command's own shells (not the short-lived processes its wait loop starts)."""
    found = set()
    for pid in marked_pids(marker):
        try:
            if psutil.Process(pid).name() == "sh":
                found.add(pid)
        except psutil.NoSuchProcess:
            continue
    return found


def test_ci_left_running_by_a_killed_server_is_ended_and_runs_once(tmp_path: Path) -> None:
    marker = new_marker()
    gate = free_port()
    with ledger_server() as (ledger, port):
        ci = (f"export FAULT_MARKER={marker}; run=$(cat /proc/sys/kernel/random/uuid); "
              + report_line(port, "start $run") + "; "
              + f"until bash -c 'exec 3<>/dev/tcp/127.0.0.1/{gate}' 2>/dev/null; do sleep 0.2; done; "
              + report_line(port, "end $run"))

        def said(word: str) -> list[str]:
            return [entry[1] for entry in ledger.snapshot() if entry[0] == word]

        server = OptioServer(tmp_path / "data").start()
        try:
            remote = make_remote(tmp_path)
            server.cli("repo", "add", str(remote), "--name", "ci-orphan", "--ci-command", ci, check=True)
            task = new_task(server, "--repo", "ci-orphan", "--title", "Add", "--prompt", "p",
                            "--command", "echo hello > hello.txt")
            wait_for(lambda: said("start"), "the CI command to start")
            old = wait_for(lambda: ci_shells(marker), "the CI command's shell")

            server.kill9()
            assert ci_shells(marker) == old, "the CI command did not outlive the server: nothing to test"

            server.spawn().wait_healthy()
            wait_for(lambda: not ci_shells(marker) & old, "the killed server's CI command to end", timeout=30)
            wait_for(lambda: len(said("start")) == 2, "the restarted server to run the CI again")
            with socket.create_server(("127.0.0.1", gate)):  # the CI may end now
                final = server.wait_state(f"/api/repo-tasks/{task['id']}", END, timeout=90)
            wait_for(lambda: not marked_pids(marker), "every CI process to end", timeout=15)

            assert (final["state"], final["pr_state"]) == ("completed", "merged"), (final, server.log()[-3000:])
            first, rerun = said("start")
            assert said("end") == [rerun], ledger.snapshot()  # only the rerun completed; the old one never did
            assert first != rerun
            assert git("log", "--format=%s", "main", cwd=remote).splitlines() == ["Add (#1)", "initial"]
            assert "orphaned_ci_ended" in server.log()
        finally:
            server.stop()


def test_ci_of_a_stopped_server_ends_with_it_and_runs_again_after_restart(tmp_path: Path) -> None:
    """SIGTERM (a service stop or a deploy): the server ends its CI commands before it exits, records no result
    for them (an ended CI is not a red one), and the restarted server runs that CI again."""
    marker = new_marker()
    gate = free_port()
    with ledger_server() as (ledger, port):
        ci = (f"export FAULT_MARKER={marker}; run=$(cat /proc/sys/kernel/random/uuid); "
              + report_line(port, "start $run") + "; "
              + f"until bash -c 'exec 3<>/dev/tcp/127.0.0.1/{gate}' 2>/dev/null; do sleep 0.2; done; "
              + report_line(port, "end $run"))

        def said(word: str) -> list[str]:
            return [entry[1] for entry in ledger.snapshot() if entry[0] == word]

        server = OptioServer(tmp_path / "data").start()
        try:
            remote = make_remote(tmp_path)
            server.cli("repo", "add", str(remote), "--name", "ci-stop", "--ci-command", ci, check=True)
            task = new_task(server, "--repo", "ci-stop", "--title", "Add", "--prompt", "p",
                            "--command", "echo hello > hello.txt")
            wait_for(lambda: said("start"), "the CI command to start")
            wait_for(lambda: ci_shells(marker), "the CI command's shell")

            server.stop()
            assert server.proc is not None and server.proc.returncode is not None
            # Ended before the server exited (SIGTERM, then SIGKILL after a grace), not left to a restart.
            assert not marked_pids(marker), "the stopped server left its CI command running"
            assert "ci_ended_for_shutdown" in server.log()
            with sqlite3.connect(server.data_dir / "optio.db") as db:
                statuses = [row[0] for row in db.execute("SELECT status FROM ci_runs")]
            assert statuses == ["pending"], statuses  # no red CI recorded for a command the stop ended

            server.spawn().wait_healthy()
            wait_for(lambda: len(said("start")) == 2, "the restarted server to run the CI again")
            with socket.create_server(("127.0.0.1", gate)):  # the CI may end now
                final = server.wait_state(f"/api/repo-tasks/{task['id']}", END, timeout=90)
            assert (final["state"], final["pr_state"]) == ("completed", "merged"), (final, server.log()[-3000:])
            first, rerun = said("start")
            assert said("end") == [rerun] and first != rerun, ledger.snapshot()
            assert final["resume_count"] == 0, final  # the ended run never reached the agent as a failure
        finally:
            server.stop()
