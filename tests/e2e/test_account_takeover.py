"""Accounts on a real server: a workspace admin cannot reach people or passwords outside its workspace,
a password changes only with the current one (or by a server administrator), and a change signs out the
user's other browser sessions."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.optio_server import OPTIO, OptioServer

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "correct horse battery"


@pytest.fixture
def optio_server(tmp_path: Path) -> Iterator[OptioServer]:
    """These tests sign in and change passwords more often than the default sign-in rate limit allows."""
    server = OptioServer(tmp_path / "data", env={"OPTIO_LOGIN_RATE_LIMIT": "1000"}).start()
    try:
        yield server
    finally:
        server.stop()


def browser_login(server: OptioServer, username: str, password: str) -> tuple[httpx.Client, httpx.Response]:
    """Sign in through the real form (CSRF token from the page); returns the browser and the answer."""
    browser = httpx.Client(base_url=server.url, timeout=30)
    form = browser.get("/login")
    csrf = re.search(r"name='csrf_token' value='([^']+)'", form.text).group(1)  # type: ignore[union-attr]
    return browser, browser.post("/login", data={"username": username, "password": password, "csrf_token": csrf})


def page_csrf(browser: httpx.Client) -> str:
    return re.search(r"name='csrf-token' content='([^']+)'", browser.get("/").text).group(1)  # type: ignore[union-attr]


def add_user(server: OptioServer, username: str, role: str, workspace: str = "default") -> str:
    """The bootstrap admin (a server administrator) creates a user in `workspace`; returns their API key."""
    res = server.api("PUT", f"/api/members/{username}", headers={"X-Optio-Workspace": workspace},
                     json={"role": role, "create_api_key": True})
    assert res.status_code == 200 and res.json()["created"] is True, res.text
    return res.json()["api_key"]


def test_admin_of_another_workspace_cannot_reset_the_bootstrap_admins_password(optio_server: OptioServer) -> None:
    s = optio_server
    assert s.api("PUT", "/api/me/password", json={"password": ADMIN_PASSWORD}).status_code == 204
    s.api("POST", "/api/workspaces", json={"slug": "b"}).raise_for_status()
    bob = add_user(s, "bob", "admin", workspace="b")
    # The bootstrap admin is still an admin of b, so bob sees the name; the password is refused regardless.
    attack = {"role": "admin", "password": "mallory-owns-this-now"}
    for headers in ({}, {"X-Optio-Workspace": "b"}, {"X-Optio-Workspace": "default"}):
        res = s.api("PUT", "/api/members/admin", token=bob, headers=headers, json=attack)
        assert res.status_code in (403, 404), (headers, res.status_code, res.text)
    res = s.api("PUT", "/api/users/admin/password", token=bob, json={"password": "mallory-owns-this-now"})
    assert res.status_code == 404
    assert s.api("GET", "/api/users", token=bob).status_code == 403
    assert browser_login(s, "admin", "mallory-owns-this-now")[1].status_code == 401
    assert browser_login(s, "admin", ADMIN_PASSWORD)[1].status_code == 303
    # Not even a server administrator sets a password through a membership.
    res = s.api("PUT", "/api/members/bob", headers={"X-Optio-Workspace": "b"},
                json={"role": "admin", "password": "a-new-password-for-bob"})
    assert res.status_code == 403 and res.json()["error"]["field"] == "password"


def test_membership_routes_do_not_tell_whether_a_name_exists_elsewhere(optio_server: OptioServer) -> None:
    s = optio_server
    add_user(s, "carol", "member")  # exists, in the default workspace only
    s.api("POST", "/api/workspaces", json={"slug": "b"}).raise_for_status()
    bob = add_user(s, "bob", "admin", workspace="b")
    add_user(s, "dave", "viewer", workspace="b")
    assert s.api("DELETE", "/api/members/admin", headers={"X-Optio-Workspace": "b"}).status_code == 204

    def answer(method: str, path: str, name: str, body: dict[str, object] | None) -> tuple[int, str]:
        res = s.api(method, path.format(name), token=bob, json=body)
        return res.status_code, res.text.replace(name, "NAME")

    for method, path, body in [("PUT", "/api/members/{}", {"role": "viewer"}),
                               ("PUT", "/api/members/{}", {"role": "admin", "create_api_key": True}),
                               ("DELETE", "/api/members/{}", None),
                               ("PUT", "/api/users/{}/password", {"password": "long-enough-password"})]:
        existing, missing = answer(method, path, "carol", body), answer(method, path, "nobody-at-all", body)
        assert existing == missing and existing[0] == 404, (method, path, existing, missing)
    assert "carol" not in {m["username"] for m in s.api("GET", "/api/members", token=bob).json()}
    assert {m["username"] for m in s.api("GET", "/api/members").json()} >= {"admin", "carol"}
    # Someone bob already shares a workspace with stays manageable there.
    res = s.api("PUT", "/api/members/dave", token=bob, json={"role": "member"})
    assert res.status_code == 200 and res.json()["previous_role"] == "viewer" and res.json()["created"] is False
    # The CLI says the same.
    out = s.cli("--token", bob, "member", "set", "carol", "--role", "viewer")
    assert out.returncode == 1 and "not found" in out.stderr
    listed = s.cli("--token", bob, "member", "list", check=True).stdout
    assert "dave" in listed and "carol" not in listed


def test_own_password_change_needs_the_current_one_and_ends_other_sessions(optio_server: OptioServer) -> None:
    s = optio_server
    assert s.api("PUT", "/api/me/password", json={"password": ADMIN_PASSWORD}).status_code == 204  # first one
    missing = s.api("PUT", "/api/me/password", json={"password": "taken-over-password"})
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "current_password"
    wrong = s.api("PUT", "/api/me/password", json={"current_password": "not it at all",
                                                    "password": "taken-over-password"})
    assert wrong.status_code == 403 and wrong.json()["error"]["field"] == "current_password"
    assert browser_login(s, "admin", "taken-over-password")[1].status_code == 401

    one, ok1 = browser_login(s, "admin", ADMIN_PASSWORD)
    two, ok2 = browser_login(s, "admin", ADMIN_PASSWORD)
    assert ok1.status_code == ok2.status_code == 303
    assert one.get("/api/me").status_code == two.get("/api/me").status_code == 200
    res = one.put("/api/me/password", headers={"X-CSRF-Token": page_csrf(one)},
                  json={"current_password": ADMIN_PASSWORD, "password": "a brand new passphrase"})
    assert res.status_code == 204, res.text
    assert one.get("/api/me").status_code == 200  # the session that changed it stays signed in
    assert two.get("/api/me").status_code == 401  # every other one ends
    assert browser_login(s, "admin", ADMIN_PASSWORD)[1].status_code == 401
    # Changed with an API key: no browser session is kept.
    three, ok3 = browser_login(s, "admin", "a brand new passphrase")
    assert ok3.status_code == 303 and three.get("/api/me").status_code == 200
    assert s.api("PUT", "/api/me/password", json={"current_password": "a brand new passphrase",
                                                   "password": "yet another passphrase"}).status_code == 204
    assert three.get("/api/me").status_code == 401 and one.get("/api/me").status_code == 401
    events = s.api("GET", "/api/audit", params={"action": "user.password_change"}).json()["items"]
    assert [e["detail"]["sessions_ended"] for e in events] == [2, 1, 0]


def test_server_administrator_resets_a_password_and_signs_the_user_out(optio_server: OptioServer) -> None:
    s = optio_server
    erin = add_user(s, "erin", "member")
    assert s.api("PUT", "/api/me/password", token=erin, json={"password": "erins own password"}).status_code == 204
    browser, ok = browser_login(s, "erin", "erins own password")
    assert ok.status_code == 303 and browser.get("/api/me").json()["server_admin"] is False
    # erin is an admin of nothing but a member; the server administrator resets her password.
    assert s.api("GET", "/api/me").json()["server_admin"] is True
    assert s.api("PUT", "/api/users/erin/password", json={"password": "reset by the admin"}).status_code == 204
    assert browser.get("/api/me").status_code == 401
    assert browser_login(s, "erin", "reset by the admin")[1].status_code == 303
    users = {u["username"]: u for u in s.api("GET", "/api/users").json()}
    assert users["erin"]["workspaces"] == {"default": "member"} and users["admin"]["server_admin"] is True
    assert s.api("GET", "/api/users", token=erin).status_code == 403
    assert s.api("PUT", "/api/users/admin/password", token=erin, json={"password": "erin wants admin"}
                 ).status_code == 404
    reset = s.api("GET", "/api/audit", params={"action": "user.password_reset"}).json()["items"]
    assert [(e["actor"], e["target_id"]) for e in reset] == [("admin", "erin")]


def test_cli_password_member_and_user_commands(optio_server: OptioServer) -> None:
    s = optio_server

    def cli(*args: str, stdin: str = "", token: str | None = None) -> subprocess.CompletedProcess[str]:
        env = s.env() if token is None else {**s.env(), "OPTIO_TOKEN": token}
        # A new session has no controlling terminal, so the hidden prompts read stdin.
        return subprocess.run([*OPTIO, "--url", s.url, *args], env=env, input=stdin, capture_output=True,
                              text=True, timeout=60, start_new_session=True)

    out = cli("member", "set", "frank", "--role", "member", "--create-api-key")
    assert out.returncode == 0 and "created and added as member" in out.stdout, out.stderr
    frank = re.search(r"optio_[A-Za-z0-9]{40}", out.stdout).group(0)  # type: ignore[union-attr]
    assert cli("password", "--first", stdin="franks first password\nfranks first password\n",
               token=frank).returncode == 0
    wrong = cli("password", stdin="not my password\nfranks new password\nfranks new password\n", token=frank)
    assert wrong.returncode == 1 and "current password is wrong" in wrong.stderr
    assert browser_login(s, "frank", "franks first password")[1].status_code == 303
    ok = cli("password", stdin="franks first password\nfranks new password\nfranks new password\n", token=frank)
    assert ok.returncode == 0, ok.stderr
    assert browser_login(s, "frank", "franks new password")[1].status_code == 303
    listed = cli("user", "list")
    assert listed.returncode == 0 and "frank" in listed.stdout and "default:member" in listed.stdout
    assert cli("user", "list", token=frank).returncode == 1
    reset = cli("user", "reset-password", "frank", stdin="set by the server admin\nset by the server admin\n")
    assert reset.returncode == 0, reset.stderr
    assert browser_login(s, "frank", "set by the server admin")[1].status_code == 303
    assert cli("member", "remove", "frank").returncode == 0
    assert "frank" not in cli("member", "list").stdout


def test_guessing_the_current_password_is_rate_limited(tmp_path: Path) -> None:
    server = OptioServer(tmp_path / "data", env={"OPTIO_LOGIN_RATE_LIMIT": "4",
                                                  "OPTIO_RATE_LIMIT_WINDOW_S": "3600"}).start()
    try:
        assert server.api("PUT", "/api/me/password", json={"password": ADMIN_PASSWORD}).status_code == 204
        codes = [server.api("PUT", "/api/me/password", json={"current_password": f"guess number {i}",
                                                             "password": "the attackers own"}).status_code
                 for i in range(5)]
        assert server.api("GET", "/api/me").status_code == 200
    finally:
        server.stop()
    assert codes == [403, 403, 403, 429, 429], codes
