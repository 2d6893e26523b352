"""Jobs end to end: a real `optio serve` subprocess, the real CLI, real agent processes, a real SQLite file."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import psutil
import pytest
from tests.support.optio_server import OptioServer


def _agent_pid(data_dir: Path, run_id: int) -> int | None:
    with sqlite3.connect(data_dir / "optio.db") as db:
        row = db.execute(
            "SELECT pid FROM agent_processes WHERE run_kind='job_run' AND run_id=? ORDER BY id DESC LIMIT 1",
            (run_id,),
        ).fetchone()
    return row[0] if row else None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return any(p.info["status"] != psutil.STATUS_ZOMBIE for p in psutil.process_iter(["status"])
               if _pgid(p.pid) == pgid)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


@pytest.fixture(scope="module")
def optio_server(module_optio_server: OptioServer) -> OptioServer:
    """Shared by the module's tests: each creates a job of its own name and reads only its own runs."""
    return module_optio_server


def test_thousand_lines_complete_in_order(optio_server: OptioServer) -> None:
    optio_server.cli("job", "create", "--name", "numbers", "--prompt", "count",
                     "--command", 'for i in $(seq 1 1000); do echo "line $i"; done', check=True)
    res = optio_server.cli("job", "run", "numbers", "--wait", "--json", check=True)
    run = json.loads(res.stdout)
    assert run["state"] == "completed"
    logs = optio_server.cli("run", "logs", str(run["id"]), check=True)
    assert logs.stdout.splitlines() == [f"line {i}" for i in range(1, 1001)]


def test_fails_twice_then_succeeds_with_retries(optio_server: OptioServer) -> None:
    # The run's HOME is the one place of the host an attempt shares with the next (the sandbox hides the rest).
    counter = "$HOME/attempts"
    script = f'n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; echo "try $n"; [ "$n" -ge 3 ]'
    optio_server.cli("job", "create", "--name", "flaky", "--prompt", "p", "--command", script,
                     "--max-retries", "3", check=True)
    res = optio_server.cli("job", "run", "flaky", "--wait", "--json")
    assert res.returncode == 0, res.stderr
    run = json.loads(res.stdout)
    assert run["state"] == "completed"
    assert run["attempts"] == 3
    shown = json.loads(optio_server.cli("run", "show", str(run["id"]), "--json", check=True).stdout)
    assert shown["attempts"] == 3 and shown["retry_count"] == 2 and shown["error"] is None
    events = optio_server.api("GET", f"/api/runs/{run['id']}/events").json()
    assert [e["event"] for e in events].count("retry_scheduled") == 2


def test_retries_exhausted_fails_and_wait_exits_nonzero(optio_server: OptioServer) -> None:
    optio_server.cli("job", "create", "--name", "broken", "--prompt", "p", "--command", "echo nope >&2; exit 7",
                     "--max-retries", "1", check=True)
    res = optio_server.cli("job", "run", "broken", "--wait", "--json")
    assert res.returncode == 1
    run = json.loads(res.stdout)
    assert run["state"] == "failed" and run["attempts"] == 2
    assert "exited with code 7" in run["error"]


def test_cancel_running_sleep_kills_process_group(optio_server: OptioServer) -> None:
    optio_server.cli("job", "create", "--name", "sleeper", "--prompt", "p",
                     "--command", "sleep 600 & sleep 600; wait", check=True)
    run = json.loads(optio_server.cli("job", "run", "sleeper", "--json", check=True).stdout)
    optio_server.wait_state(f"/api/runs/{run['id']}", {"running"})
    deadline = time.monotonic() + 10
    pid = None
    while pid is None and time.monotonic() < deadline:
        pid = _agent_pid(optio_server.data_dir, run["id"])
        time.sleep(0.05)
    assert pid is not None
    pgid = os.getpgid(pid)
    assert _group_alive(pgid)
    started = time.monotonic()
    optio_server.cli("run", "cancel", str(run["id"]), check=True)
    # The sleeps would run for ten minutes: ending well inside the wait means the cancel ended them (the
    # latency itself is a benchmark's business, not a test's, so the bound is generous).
    final = optio_server.wait_state(f"/api/runs/{run['id']}", {"cancelled", "failed", "completed"}, timeout=30)
    assert final["state"] == "cancelled"
    while _group_alive(pgid) and time.monotonic() - started < 30:
        time.sleep(0.05)
    assert not _group_alive(pgid)


def test_params_render_and_bad_input_is_4xx(optio_server: OptioServer) -> None:
    optio_server.cli("job", "create", "--name", "greet", "--prompt", "Hello {{WHO}}",
                     "--command", 'cat "$OPTIO_PROMPT_FILE"', check=True)
    missing = optio_server.cli("job", "run", "greet")
    assert missing.returncode == 1 and "WHO" in missing.stderr
    res = optio_server.cli("job", "run", "greet", "--param", "WHO=world", "--wait", "--json", check=True)
    run = json.loads(res.stdout)
    assert optio_server.cli("run", "logs", str(run["id"])).stdout.strip() == "Hello world"
    bad = optio_server.api("POST", "/api/jobs", json={"name": "", "prompt_template": "x"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "name"
    dup = optio_server.api("POST", "/api/jobs", json={"name": "greet", "prompt_template": "x",
                                                      "agent_config": {"command": "true"}})
    assert dup.status_code == 409
    no_cmd = optio_server.api("POST", "/api/jobs", json={"name": "nocmd", "prompt_template": "x"})
    assert no_cmd.status_code == 422 and "command" in no_cmd.json()["error"]["message"]
    assert optio_server.api("GET", "/api/runs/999999").status_code == 404
    assert optio_server.api("GET", "/api/runs/abc").status_code == 422
    assert optio_server.api("POST", "/api/runs/999999/cancel").status_code == 404
    assert optio_server.api("GET", "/openapi.json").status_code == 200


def test_live_stream_replays_then_follows(optio_server: OptioServer) -> None:
    optio_server.cli("job", "create", "--name", "slow", "--prompt", "p",
                     "--command", "for i in 1 2 3 4 5; do echo tick $i; sleep 0.2; done", check=True)
    run = json.loads(optio_server.cli("job", "run", "slow", "--json", check=True).stdout)
    res = optio_server.cli("run", "logs", str(run["id"]), "--follow", check=True, timeout=60)
    assert res.stdout.splitlines() == [f"tick {i}" for i in range(1, 6)]
    replay = optio_server.cli("run", "logs", str(run["id"]), "--follow", "--after", "3", check=True)
    assert replay.stdout.splitlines() == ["tick 4", "tick 5"]


def test_kill9_server_mid_run_is_redriven(tmp_path: Path) -> None:
    """The server dies with SIGKILL while an agent runs; after a restart the run ends, never stuck `running`."""
    server = OptioServer(tmp_path / "data").start()
    try:
        server.cli("job", "create", "--name", "survivor", "--prompt", "p",
                   "--command", "echo begin; sleep 5; echo done", check=True)
        run = json.loads(server.cli("job", "run", "survivor", "--json", check=True).stdout)
        server.wait_state(f"/api/runs/{run['id']}", {"running"})
        time.sleep(0.5)
        server.kill9()
        with sqlite3.connect(server.data_dir / "optio.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        server.start()
        final = server.wait_state(f"/api/runs/{run['id']}", {"completed", "failed"}, timeout=60)
        assert final["state"] == "completed", final
        lines = server.cli("run", "logs", str(run["id"]), check=True).stdout.splitlines()
        assert lines == ["begin", "done"]
        assert final["attempts"] == 1
        with sqlite3.connect(server.data_dir / "optio.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            running = db.execute("SELECT count(*) FROM job_runs WHERE state='running'").fetchone()[0]
        assert running == 0
    finally:
        server.stop()


def test_kill9_with_agent_killed_while_down_is_retried(tmp_path: Path) -> None:
    """The agent dies too while no server watches it: the reconciler sees it gone and retries."""
    server = OptioServer(tmp_path / "data").start()
    try:
        server.cli("job", "create", "--name", "fragile", "--prompt", "p", "--max-retries", "1",
                   "--command", 'if [ "$OPTIO_ATTEMPT" = 1 ]; then sleep 600; fi; echo ok', check=True)
        run = json.loads(server.cli("job", "run", "fragile", "--json", check=True).stdout)
        server.wait_state(f"/api/runs/{run['id']}", {"running"})
        pid = None
        while pid is None:
            pid = _agent_pid(server.data_dir, run["id"])
            time.sleep(0.05)
        server.kill9()
        os.killpg(os.getpgid(pid), 9)
        server.start()
        final = server.wait_state(f"/api/runs/{run['id']}", {"completed", "failed"}, timeout=60)
        assert final["state"] == "completed" and final["attempts"] == 2
        events = server.api("GET", f"/api/runs/{run['id']}/events").json()
        assert any("died" in e["reason"] or "lost" in e["reason"] for e in events), events
    finally:
        server.stop()


def test_concurrency_caps_are_never_exceeded(tmp_path: Path) -> None:
    """Eight runs against a global cap of 3 and a job cap of 2: the agents' own start/end marks show at
    most 2 of them ever ran at once, though four reconcile workers decide in parallel."""
    server = OptioServer(tmp_path / "data", env={"OPTIO_MAX_CONCURRENT_RUNS": "3"}).start()
    try:
        server.api("POST", "/api/jobs", json={
            "name": "capped", "prompt_template": "p", "max_concurrent_runs": 2,
            "agent_config": {"command": "echo start $(date +%s%N); sleep 0.4; echo end $(date +%s%N)"},
        }).raise_for_status()
        ids = [server.api("POST", "/api/jobs/capped/runs", json={}).json()["id"] for _ in range(8)]
        for run_id in ids:
            assert server.wait_state(f"/api/runs/{run_id}", {"completed", "failed"}, timeout=90)["state"] == "completed"
        marks: list[tuple[int, int]] = []  # (when, +1 start / -1 end), from each run's own log
        for run_id in ids:
            for item in server.api("GET", f"/api/runs/{run_id}/logs").json()["items"]:
                word, _, when = item["text"].partition(" ")
                marks.append((int(when), 1 if word == "start" else -1))
        running = peak = 0
        for _, step in sorted(marks):
            running += step
            peak = max(peak, running)
        assert peak == 2
    finally:
        server.stop()
