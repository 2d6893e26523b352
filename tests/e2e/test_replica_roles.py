"""`optio serve --role`: API replicas serve HTTP and run nothing, a worker replica runs the work and serves only
its health; a login limit holds across two API replicas on one PostgreSQL database, and the API replicas' log and
event streams follow what the worker writes."""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from tests.support.optio_server import OPTIO, OptioServer

LIMIT = 4


def replica(data_dir: Path, role: str, env: dict[str, str]) -> OptioServer:
    server = OptioServer(data_dir, env=env)
    server.serve_args = ["--role", role]
    return server


def sse_until(server: OptioServer, path: str, marker: str, timeout: float = 150.0) -> str:
    """What a server-sent event stream says up to `marker`."""
    seen = ""
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", server.url + path, headers={"Authorization": f"Bearer {server.admin_key}"},
                      timeout=httpx.Timeout(timeout)) as response:
        for chunk in response.iter_text():
            seen += chunk
            if marker in seen or time.monotonic() > deadline:
                return seen
    return seen


def job_state(server: OptioServer, run_id: int) -> str:
    return str(server.api("GET", f"/api/runs/{run_id}").json()["state"])


@pytest.mark.timeout(400)
def test_roles_split_http_from_work_and_limits_hold_across_replicas(pg_url: str, tmp_path: Path) -> None:
    env = {"OPTIO_DATABASE_URL": pg_url, "OPTIO_LOGIN_RATE_LIMIT": str(LIMIT), "OPTIO_RATE_LIMIT_WINDOW_S": "3600",
           "OPTIO_REPLICA_LEASE_S": "3", "OPTIO_LOG_LEVEL": "warning"}
    first = replica(tmp_path / "data", "api", env)
    second = replica(tmp_path / "data", "api", env)
    worker = replica(tmp_path / "data", "worker", env)
    for i, server in enumerate((first, second, worker)):
        server.admin_key = first.admin_key
        server.log_path = tmp_path / f"server-{i}.log"
    first.start(timeout=120)
    second.start(timeout=120)
    try:
        assert "as api" in first.log()
        # Sign-in guesses alternate between the two API replicas: the limit counts them together.
        codes = [server.api("POST", "/login", token="", data={"username": "admin", "password": "guess"},
                            follow_redirects=False).status_code for server in [first, second] * (LIMIT + 1)]
        assert all(code != 429 for code in codes[:LIMIT]) and set(codes[LIMIT:]) == {429}, codes

        # API replicas take work and run none of it.
        first.api("POST", "/api/jobs", json={"name": "hello", "prompt_template": "hi", "agent_type": "script",
                                              "agent_config": {"command": "echo hello"}}).raise_for_status()
        run = first.api("POST", "/api/jobs/hello/runs", json={})
        assert run.status_code in (200, 201), run.text
        run_id = run.json()["id"]
        time.sleep(3)
        assert job_state(second, run_id) == "queued"

        # Streams on the API replicas follow what the worker writes: the run's log, and the workspace's events.
        log_stream = ThreadPoolExecutor(2)
        log_text = log_stream.submit(sse_until, second, f"/api/runs/{run_id}/logs/stream", "event: end")
        event_text = log_stream.submit(sse_until, first, "/api/events/stream", '"to_state": "completed"')

        # A worker replica runs it (woken by NOTIFY or its first look); its HTTP serves only its health.
        worker.start(timeout=120)
        assert "as worker" in worker.log()
        deadline = time.monotonic() + 120
        while job_state(second, run_id) not in ("completed", "failed"):
            assert time.monotonic() < deadline, job_state(second, run_id)
            time.sleep(0.2)
        assert job_state(first, run_id) == "completed"
        assert "hello" in log_text.result(timeout=60)
        assert f'"run_id": {run_id}' in event_text.result(timeout=60)
        log_stream.shutdown()
        assert worker.api("GET", "/api/health").status_code == 200
        assert worker.api("GET", "/api/jobs").status_code == 404
    finally:
        for server in (first, second, worker):
            server.stop()


def test_serve_refuses_an_unknown_role(tmp_path: Path) -> None:
    server = OptioServer(tmp_path / "data")
    res = subprocess.run([*OPTIO, "serve", "--role", "everything"], env=server.env(), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "--role must be api, worker or all" in res.stderr
