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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from tests.faults.support_env import END, marked_pids, new_marker, new_task, wait_for
from tests.faults.support_kill import Ledger, ledger_server, report_line
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


@dataclass
class CiMidRun:
    """A server whose one task's CI command has started and waits for `open_gate`, with the ledger it reports to."""

    server: OptioServer
    remote: Path
    task: dict[str, Any]
    marker: str
    shells: set[int]
    gate: int
    ledger: Ledger

    def said(self, word: str) -> list[str]:
        return [entry[1] for entry in self.ledger.snapshot() if entry[0] == word]

    def finish(self) -> dict[str, Any]:
        """Let the CI end, and the task's final view once it is over."""
        with socket.create_server(("127.0.0.1", self.gate)):  # the CI may end now
            return self.server.wait_state(f"/api/repo-tasks/{self.task['id']}", END, timeout=90)


@contextmanager
def ci_mid_run(tmp_path: Path, repo: str) -> Iterator[CiMidRun]:
    marker = new_marker()
    gate = free_port()
    with ledger_server() as (ledger, port):
        ci = (f"export FAULT_MARKER={marker}; run=$(cat /proc/sys/kernel/random/uuid); "
              + report_line(port, "start $run") + "; "
              + f"until bash -c 'exec 3<>/dev/tcp/127.0.0.1/{gate}' 2>/dev/null; do sleep 0.2; done; "
              + report_line(port, "end $run"))
        server = OptioServer(tmp_path / "data").start()
        try:
            remote = make_remote(tmp_path)
            server.cli("repo", "add", str(remote), "--name", repo, "--ci-command", ci, check=True)
            task = new_task(server, "--repo", repo, "--title", "Add", "--prompt", "p",
                            "--command", "echo hello > hello.txt")
            run = CiMidRun(server, remote, task, marker, set(), gate, ledger)
            wait_for(lambda: run.said("start"), "the CI command to start")
            run.shells = wait_for(lambda: ci_shells(marker), "the CI command's shell")
            yield run
        finally:
            server.stop()


def test_ci_left_running_by_a_killed_server_is_ended_and_runs_once(tmp_path: Path) -> None:
    with ci_mid_run(tmp_path, "ci-orphan") as run:
        server, old = run.server, run.shells
        server.kill9()
        assert ci_shells(run.marker) == old, "the CI command did not outlive the server: nothing to test"

        server.spawn().wait_healthy()
        wait_for(lambda: not ci_shells(run.marker) & old, "the killed server's CI command to end", timeout=30)
        wait_for(lambda: len(run.said("start")) == 2, "the restarted server to run the CI again")
        final = run.finish()
        wait_for(lambda: not marked_pids(run.marker), "every CI process to end", timeout=15)

        assert (final["state"], final["pr_state"]) == ("completed", "merged"), (final, server.log()[-3000:])
        first, rerun = run.said("start")
        assert run.said("end") == [rerun], run.ledger.snapshot()  # only the rerun completed; the old one never did
        assert first != rerun
        assert git("log", "--format=%s", "main", cwd=run.remote).splitlines() == ["Add (#1)", "initial"]
        assert "orphaned_ci_ended" in server.log()


def test_ci_of_a_stopped_server_ends_with_it_and_runs_again_after_restart(tmp_path: Path) -> None:
    """SIGTERM (a service stop or a deploy): the server ends its CI commands before it exits, records no result
    for them (an ended CI is not a red one), and the restarted server runs that CI again."""
    with ci_mid_run(tmp_path, "ci-stop") as run:
        server = run.server
        server.stop()
        assert server.proc is not None and server.proc.returncode is not None
        # Ended before the server exited (SIGTERM, then SIGKILL after a grace), not left to a restart.
        assert not marked_pids(run.marker), "the stopped server left its CI command running"
        assert "ci_ended_for_shutdown" in server.log()
        with sqlite3.connect(server.data_dir / "optio.db") as db:
            statuses = [row[0] for row in db.execute("SELECT status FROM ci_runs")]
        assert statuses == ["pending"], statuses  # no red CI recorded for a command the stop ended

        server.spawn().wait_healthy()
        wait_for(lambda: len(run.said("start")) == 2, "the restarted server to run the CI again")
        final = run.finish()
        assert (final["state"], final["pr_state"]) == ("completed", "merged"), (final, server.log()[-3000:])
        first, rerun = run.said("start")
        assert run.said("end") == [rerun] and first != rerun, run.ledger.snapshot()
        assert final["resume_count"] == 0, final  # the ended run never reached the agent as a failure
