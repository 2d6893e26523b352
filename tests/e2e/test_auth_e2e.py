"""Authentication, roles, API keys, browser sessions with CSRF, limits and the audit log, on a real server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow


def test_requests_need_credentials_and_keys_are_revocable(optio_server: OptioServer) -> None:
    s = optio_server
    assert s.api("GET", "/api/jobs", token="").status_code == 401
    assert s.api("GET", "/api/jobs", token="optio_" + "x" * 40).status_code == 401
    assert s.api("GET", "/api/health", token="").status_code == 200

    out = s.cli("apikey", "create", "ci-bot", check=True).stdout
    key = re.search(r"optio_[A-Za-z0-9]{40}", out).group(0)  # type: ignore[union-attr]
    assert s.api("GET", "/api/me", token=key).json()["username"] == "admin"
    keys = json.loads(s.cli("apikey", "list", "--json", check=True).stdout)
    mine = next(k for k in keys if k["name"] == "ci-bot")
    assert mine["last_used_at"] is not None and key not in json.dumps(keys)
    s.cli("apikey", "revoke", str(mine["id"]), check=True)
    assert s.api("GET", "/api/me", token=key).status_code == 401


def test_cli_login_whoami_and_workspace_switch(optio_server: OptioServer) -> None:
    s = optio_server
    s.api("POST", "/api/workspaces", json={"slug": "team-b", "name": "Team B"}).raise_for_status()
    env_no_token = {"OPTIO_TOKEN": ""}
    s.extra_env.update(env_no_token)
    try:
        assert s.cli("whoami").returncode == 1
        assert s.cli("login", "--token", s.admin_key, check=True).returncode == 0
        assert "admin in workspace default" in s.cli("whoami", check=True).stdout
        assert s.cli("workspace", "switch", "nope").returncode != 0
        s.cli("workspace", "switch", "team-b", check=True)
        assert "workspace team-b" in s.cli("whoami", check=True).stdout
        listed = s.cli("workspace", "list", check=True).stdout
        assert "default" in listed and "team-b" in listed
        s.cli("job", "create", "--name", "in-b", "--prompt", "p", "--command", "true", check=True)
        assert s.api("GET", "/api/jobs").json() == []  # created in team-b, not default
        assert [j["name"] for j in s.api("GET", "/api/jobs", headers={"X-Optio-Workspace": "team-b"}).json()] == [
            "in-b"]
    finally:
        s.extra_env.pop("OPTIO_TOKEN")


def test_roles_viewers_read_members_write_admins_manage(optio_server: OptioServer) -> None:
    s = optio_server
    viewer = s.api("PUT", "/api/members/vera", json={"role": "viewer", "create_api_key": True}).json()["api_key"]
    member = s.api("PUT", "/api/members/mo", json={"role": "member", "create_api_key": True}).json()["api_key"]
    job = {"name": "j1", "prompt_template": "p", "agent_config": {"command": "true"}}
    assert s.api("POST", "/api/jobs", token=viewer, json=job).status_code == 403
    assert s.api("POST", "/api/jobs", token=member, json=job).status_code == 201
    assert s.api("GET", "/api/jobs", token=viewer).status_code == 200
    assert s.api("POST", "/api/apikeys", token=viewer, json={"name": "mine"}).status_code == 201
    for token in (viewer, member):
        assert s.api("PUT", "/api/secrets/X", token=token, json={"value": "vvvv"}).status_code == 403
        assert s.api("GET", "/api/audit", token=token).status_code == 403
        assert s.api("PUT", "/api/members/eve", token=token, json={"role": "admin"}).status_code == 403
    assert s.api("GET", "/api/secrets", token=viewer).status_code == 200
    # Role change is audited with before and after; the last admin cannot demote themselves.
    assert s.api("PUT", "/api/members/vera", json={"role": "member"}).json()["previous_role"] == "viewer"
    assert s.api("PUT", "/api/members/admin", json={"role": "member"}).status_code == 409
    events = s.api("GET", "/api/audit").json()["items"]
    change = next(e for e in events if e["action"] == "member.role_change")
    assert change["actor"] == "admin" and change["detail"] == {"from": "viewer", "to": "member", "created": False}
    created = next(e for e in events if e["action"] == "create_job")
    assert created["actor"] == "mo" and created["detail"]["status"] == 201
    assert not any(e["actor"] == "vera" and e["action"] == "create_job" for e in events)  # refused, not audited


def test_cancel_and_retry_are_audited(optio_server: OptioServer) -> None:
    s = optio_server
    s.cli("job", "create", "--name", "sleepy", "--prompt", "p", "--command", "sleep 30", check=True)
    run = json.loads(s.cli("job", "run", "sleepy", "--json", check=True).stdout)
    s.wait_state(f"/api/runs/{run['id']}", {"running"})
    s.cli("run", "cancel", str(run["id"]), check=True)
    s.wait_state(f"/api/runs/{run['id']}", {"cancelled"})
    s.cli("run", "retry", str(run["id"]), check=True)
    actions = [e["action"] for e in s.api("GET", "/api/audit", params={"limit": 500}).json()["items"]]
    for action in ("create_job", "start_run", "cancel_run", "retry_run"):
        assert action in actions
    cancel = s.api("GET", "/api/audit", params={"action": "cancel_run"}).json()["items"][0]
    assert cancel["target_id"] == str(run["id"]) and cancel["actor"] == "admin"
    s.cli("run", "cancel", str(run["id"]))


def test_session_login_sets_safe_cookies_and_enforces_csrf(optio_server: OptioServer) -> None:
    s = optio_server
    s.api("PUT", "/api/me/password", json={"password": "correct horse battery"}).raise_for_status()
    browser = httpx.Client(base_url=s.url, timeout=30)
    form = browser.get("/login")
    csrf = re.search(r"name='csrf_token' value='([^']+)'", form.text).group(1)  # type: ignore[union-attr]
    assert "HttpOnly" in form.headers["set-cookie"]
    # No token, or a token from another browser: refused.
    assert browser.post("/login", data={"username": "admin", "password": "correct horse battery"}).status_code == 403
    other = httpx.Client(base_url=s.url, timeout=30)
    assert other.post("/login", data={"username": "admin", "password": "correct horse battery",
                                      "csrf_token": csrf}).status_code == 403
    refused = browser.post("/login", data={"username": "admin", "password": "correct horse battery",
                                           "csrf_token": "forged"})
    assert refused.status_code == 403
    csrf = re.search(r"name='csrf_token' value='([^']+)'", refused.text).group(1)  # type: ignore[union-attr]
    bad = browser.post("/login", data={"username": "admin", "password": "wrong password!", "csrf_token": csrf})
    assert bad.status_code == 401
    csrf = re.search(r"name='csrf_token' value='([^']+)'", bad.text).group(1)  # type: ignore[union-attr]
    ok = browser.post("/login", data={"username": "admin", "password": "correct horse battery", "csrf_token": csrf})
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"]
    assert "optio_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert browser.get("/api/me").json()["auth"] == "session"
    job = {"name": "from-browser", "prompt_template": "p", "agent_config": {"command": "true"}}
    assert browser.post("/api/jobs", json=job).status_code == 403  # cookie alone cannot change state
    page_csrf = re.search(r"name='csrf-token' content='([^']+)'", browser.get("/").text).group(1)  # type: ignore[union-attr]
    assert browser.post("/api/jobs", json=job, headers={"X-CSRF-Token": page_csrf}).status_code == 201
    assert browser.post("/logout", data={"csrf_token": "nope"}).status_code == 403
    assert browser.post("/logout", data={"csrf_token": page_csrf}).status_code == 303
    assert browser.get("/api/me").status_code == 401


def test_login_and_webhook_rate_limits_hold_under_a_burst(tmp_path: Path) -> None:
    server = OptioServer(tmp_path / "data", env={"OPTIO_LOGIN_RATE_LIMIT": "5", "OPTIO_WEBHOOK_RATE_LIMIT": "8",
                                                  "OPTIO_RATE_LIMIT_WINDOW_S": "3600"}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            logins = [client.post("/login", data={"username": "admin", "password": f"guess-{i}"}).status_code
                      for i in range(20)]
            hooks = [client.post("/api/webhooks/some-trigger", json={"n": i}).status_code for i in range(20)]
            limited = client.post("/login", data={})
        assert all(code != 429 for code in logins[:5]) and logins[5:] == [429] * 15
        assert all(code != 429 for code in hooks[:8]) and hooks[8:] == [429] * 12
        assert int(limited.headers["retry-after"]) >= 1 and limited.json()["error"]["code"] == "rate_limited"
        assert server.api("GET", "/api/me").status_code == 200  # the API itself is not limited
    finally:
        server.stop()


def test_request_bodies_over_the_limit_are_refused(optio_server: OptioServer) -> None:
    s = optio_server
    big = {"name": "big", "prompt_template": "x" * (1024 * 1024 + 10), "agent_config": {"command": "true"}}
    res = s.api("POST", "/api/jobs", json=big)
    assert res.status_code == 413 and res.json()["error"]["code"] == "payload_too_large"

    def chunks():  # no Content-Length: counted as it streams in
        for _ in range(40):
            yield b"x" * 65536

    res = s.api("POST", "/api/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert res.status_code == 413
    assert s.api("GET", "/api/jobs").json() == []


def test_auth_disabled_binds_loopback_and_warns(tmp_path: Path) -> None:
    server = OptioServer(tmp_path / "data", env={"OPTIO_AUTH": "disabled", "OPTIO_HOST": "0.0.0.0"}).start()
    try:
        me = server.api("GET", "/api/me", token="")
        log = server.log()
    finally:
        server.stop()
    assert me.status_code == 200 and me.json()["auth"] == "disabled"
    assert "binding 127.0.0.1 instead of 0.0.0.0" in log and "authentication is DISABLED" in log
