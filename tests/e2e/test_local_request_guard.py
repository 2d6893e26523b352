"""With `OPTIO_AUTH=disabled`, a web page the operator opens must not drive Optio: cross-site "simple"
requests and DNS-rebinding `Host`s are refused on a real `optio serve`, while the real CLI keeps working."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow

JOB = {"name": "victim", "prompt_template": "p", "agent_config": {"command": "echo ran"}}


@pytest.fixture
def noauth(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = OptioServer(tmp_path / "data", env={"OPTIO_AUTH": "disabled"}).start()
    try:
        yield s
    finally:
        s.stop()


def raw(server: OptioServer, method: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.request(method, server.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]


def runs_of(server: OptioServer) -> list[dict]:
    return raw(server, "GET", "/api/runs").json()["items"]


def test_cross_site_simple_request_cannot_start_a_run(noauth: OptioServer) -> None:
    s = noauth
    assert s.cli("job", "create", "--name", "victim", "--prompt", "p", "--command", "echo ran").returncode == 0
    # What a form or fetch(..., {mode: "no-cors"}) on http://evil.example can send: no custom header.
    attack = {"content": json.dumps({"params": {}}), "headers": {"Content-Type": "text/plain",
                                                                 "Origin": "http://evil.example"}}
    res = raw(s, "POST", "/api/jobs/victim/runs", **attack)
    assert res.status_code == 403, res.text
    res = raw(s, "POST", "/api/jobs/victim/runs", content=json.dumps({"params": {}}),
              headers={"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site", "X-Optio-CSRF": "1"})
    assert res.status_code == 403
    res = raw(s, "POST", "/api/jobs/victim/runs", json={"params": {}})  # same machine, but no CSRF header
    assert res.status_code == 403 and "X-Optio-CSRF" in res.json()["error"]["message"]
    assert runs_of(s) == []
    # The same request with the header, from the server's own origin, is what the CLI and Optio's pages do.
    ok = raw(s, "POST", "/api/jobs/victim/runs", json={"params": {}},
             headers={"X-Optio-CSRF": "1", "Origin": s.url, "Sec-Fetch-Site": "same-origin"})
    assert ok.status_code in (200, 201), ok.text
    assert len(runs_of(s)) == 1


def test_foreign_host_is_refused(noauth: OptioServer) -> None:
    s = noauth
    for host in ("evil.example:8470", f"evil.example:{s.port}", "evil.example"):
        res = raw(s, "GET", "/api/jobs", headers={"Host": host})
        assert res.status_code == 400, (host, res.text)
        res = raw(s, "POST", "/api/jobs", json=JOB, headers={"Host": host, "X-Optio-CSRF": "1"})
        assert res.status_code == 400
    assert raw(s, "GET", "/api/jobs").json() == []
    for host in (f"127.0.0.1:{s.port}", f"localhost:{s.port}"):
        assert raw(s, "GET", "/api/health", headers={"Host": host}).status_code == 200


def test_cli_still_works_with_auth_disabled(noauth: OptioServer) -> None:
    s = noauth
    s.extra_env["OPTIO_TOKEN"] = ""
    s.cli("job", "create", "--name", "hello", "--prompt", "Hello {{WHO}}", "--command", 'cat "$OPTIO_PROMPT_FILE"',
          check=True)
    run = json.loads(s.cli("job", "run", "hello", "--param", "WHO=world", "--wait", "--json", check=True,
                           timeout=90).stdout)
    assert run["state"] == "completed"
    assert "Hello world" in s.cli("run", "logs", str(run["id"]), check=True).stdout


def test_host_check_applies_with_auth_on_for_a_loopback_bind(optio_server: OptioServer) -> None:
    s = optio_server
    assert s.api("GET", "/api/jobs", headers={"Host": "evil.example"}).status_code == 400
    assert s.api("GET", "/api/jobs").status_code == 200
