"""Agents that fight being stopped: cancel still ends every process they started, and the run says cancelled.

Each agent exports a marker only its processes carry (children inherit the environment); after the cancel no
live process on the machine may carry it. The agents ignore SIGTERM, so only the runtime's escalation to
SIGKILL ends them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.faults.support_env import END, marked_pids, new_marker, new_task, wait_for
from tests.support.git_remote import make_remote
from tests.support.optio_server import OptioServer

LOOP = 'while :; do sleep 1; done'

# (a) ignores SIGTERM and keeps running.
IGNORES_TERM = f'trap "" TERM; touch "$HOME/ready"; echo started; {LOOP}'
# (b) forks children that ignore SIGTERM, and a double-forked daemon that starts a session of its own.
FORKS = (
    f"trap '' TERM; (trap '' TERM; {LOOP}) & sh -c 'trap \"\" TERM; {LOOP}' & "
    f"(setsid sh -c 'trap \"\" TERM HUP; touch \"$HOME/daemon\"; {LOOP}' </dev/null >/dev/null 2>&1 &) ; "
    'until [ -f "$HOME/daemon" ]; do sleep 0.1; done; touch "$HOME/ready"; echo started; wait'
)
# (c) closes stdout and stderr early and keeps running.
CLOSES_STDOUT = f'echo started; exec >&- 2>&-; trap "" TERM; touch "$HOME/ready"; {LOOP}'

AGENTS = {"ignores-term": IGNORES_TERM, "forks": FORKS, "closes-stdout": CLOSES_STDOUT}
# SIGTERM, the runtime's grace, SIGKILL and the reconcile that notices: well within this.
ESCALATION_BOUND_S = 20.0


def run_home(server: OptioServer, task_id: int) -> Path:
    return server.data_dir / "homes" / f"repo_task-{task_id}"


@pytest.fixture(params=["sandbox", "unconfined"])
def optio_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OptioServer]:
    """The server as CI runs it (agents in the sandbox, whose pid namespace holds everything they start), and
    without the sandbox, where a process that left the agent's group is found by the tag in its environment."""
    env = {"OPTIO_SANDBOX": "off"} if request.param == "unconfined" else {}
    server = OptioServer(tmp_path / "data", env=env).start()
    try:
        yield server
    finally:
        server.stop()


def test_cancel_ends_every_process_of_agents_that_resist(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "stubborn", check=True)
    markers: dict[str, str] = {}
    tasks: dict[str, int] = {}
    for name, script in AGENTS.items():
        markers[name] = new_marker()
        task = new_task(optio_server, "--repo", "stubborn", "--title", name, "--prompt", name,
                        "--command", f"export FAULT_MARKER={markers[name]}; {script}")
        tasks[name] = task["id"]
    for name, task_id in tasks.items():
        wait_for(lambda t=task_id: (run_home(optio_server, t) / "ready").exists(), f"agent {name} to start")
        assert marked_pids(markers[name]), f"no process of agent {name} found by its marker"
    # The forking agent runs at least itself, two children and the daemon (each with its own sleep).
    assert len(marked_pids(markers["forks"])) >= 4

    for task_id in tasks.values():
        optio_server.cli("task", "cancel", str(task_id), check=True)

    for name, task_id in tasks.items():
        final = optio_server.wait_state(f"/api/repo-tasks/{task_id}", END, timeout=ESCALATION_BOUND_S)
        assert final["state"] == "cancelled", (name, final)
        wait_for(lambda m=markers[name]: not marked_pids(m), f"every process of agent {name} to end",
                 timeout=ESCALATION_BOUND_S)
    assert "started" in [item["text"] for item in
                         optio_server.api("GET", f"/api/repo-tasks/{tasks['closes-stdout']}/logs").json()["items"]]
