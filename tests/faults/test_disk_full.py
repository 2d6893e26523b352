"""The data dir's disk fills up while tasks run: writes fail with a clear error, the server stays up, nothing is
marked failed for it, and the work carries on once space returns.

The data dir is a real small filesystem (a tmpfs mounted for the test), filled to the last byte by a ballast file
while an agent is running; the server's own log is kept elsewhere, as a journal would be.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
from tests.faults.support_kill import fill, small_filesystem
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer, free_port

TERMINAL = {"completed", "failed", "cancelled", "needs_attention"}
BAD_EVENTS = {"failed", "needs_attention"}  # a retry of a step the full disk broke is fine


def gated_agent(port: int) -> str:
    """Prints, waits until something listens on `port` (the test's gate), prints again and writes its file."""
    return ('echo "agent waiting"; '
            f"until bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' 2>/dev/null; do sleep 0.2; done; "
            'echo "agent released"; echo done > "task-$OPTIO_TASK_ID.txt"')


def wait_for(what: str, check, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def new_task(server: OptioServer, title: str, command: str) -> httpx.Response:
    return server.api("POST", "/api/repo-tasks", json={"repo": "full", "title": title, "prompt": "write your file",
                                                       "agent_config": {"command": command}})


def test_full_disk_is_a_clear_error_and_work_resumes_when_space_returns(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    gate_port = free_port()
    with small_filesystem(tmp_path / "data", 96) as data:
        server = OptioServer(data)
        server.log_path = tmp_path / "server.log"
        server.start()
        try:
            server.api("POST", "/api/repos", json={"remote_url": str(remote), "name": "full",
                                                   "ci_command": "test -n \"$(ls task-*.txt)\""}).raise_for_status()
            first = new_task(server, "before the disk filled", gated_agent(gate_port))
            assert first.status_code == 201, first.text
            first_id = first.json()["id"]
            wait_for("the agent to run", lambda: "agent waiting" in [
                i["text"] for i in server.api("GET", f"/api/repo-tasks/{first_id}/logs").json()["items"]])

            # A second task starts as the disk fills: its worktree, agent or CI may hit the full disk (a step
            # that does waits and is tried again; it must never fail the task).
            second = new_task(server, "as the disk filled", 'echo done > "task-$OPTIO_TASK_ID.txt"')
            assert second.status_code == 201, second.text
            ballast = data / "ballast"
            assert fill(ballast) > 0

            # Writes answer a clear 503 naming the disk (a write may still fit in space SQLite already holds:
            # those succeed, and their tasks must finish like any other).
            created = [first_id, second.json()["id"]]
            refused = None
            for i in range(40):
                resp = new_task(server, f"while full {i}", 'echo done > "task-$OPTIO_TASK_ID.txt"')
                assert resp.status_code in (201, 503), (resp.status_code, resp.text)
                if resp.status_code == 201:
                    created.append(resp.json()["id"])
                    continue
                refused = resp
                break
            assert refused is not None, "no write failed on a full disk"
            error = refused.json()["error"]
            assert error["code"] == "disk_full" and "disk is full" in error["message"], error
            assert refused.headers.get("Retry-After")

            # The server stays up and answers; the reconciler keeps going without failing anything for the disk.
            for _ in range(15):
                assert server.proc is not None and server.proc.poll() is None, server.log()[-3000:]
                assert server.api("GET", "/api/health").status_code == 200
                time.sleep(0.2)
            shown = server.api("GET", f"/api/repo-tasks/{first_id}")
            assert shown.status_code == 200 and shown.json()["state"] == "running", shown.text

            # Space returns: the gated agent finishes, every task merges, new writes succeed.
            ballast.unlink()
            with socket.create_server(("127.0.0.1", gate_port)):
                final = {task_id: server.wait_state(f"/api/repo-tasks/{task_id}", TERMINAL, timeout=120)
                         for task_id in created}
            after = new_task(server, "after space returned", 'echo done > "task-$OPTIO_TASK_ID.txt"')
            assert after.status_code == 201, after.text
            final[after.json()["id"]] = server.wait_state(f"/api/repo-tasks/{after.json()['id']}", TERMINAL)
            events = {task_id: {e["event"] for e in server.api("GET", f"/api/repo-tasks/{task_id}/events").json()}
                      for task_id in final}
            logs = [i["text"] for i in server.api("GET", f"/api/repo-tasks/{first_id}/logs").json()["items"]]
        finally:
            server.stop()

    assert all(t["state"] == "completed" for t in final.values()), (final, server.log()[-4000:])
    assert not {task_id: names & BAD_EVENTS for task_id, names in events.items() if names & BAD_EVENTS}
    assert "agent released" in logs
    subjects = git("log", "--format=%s", "main", cwd=remote).splitlines()
    assert len(subjects) == len(final) + 1
