"""The dashboard's pages and forms without a browser: filters, keyset paging, bulk actions, CSRF, bad input."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.git_remote import make_remote
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow
PASSWORD = "forms-admin-password"


@pytest.fixture
def signed_in(optio_server: OptioServer) -> Iterator[tuple[OptioServer, httpx.Client, str]]:
    s = optio_server
    assert s.api("PUT", "/api/me/password", json={"password": PASSWORD}).status_code == 204
    browser = httpx.Client(base_url=s.url, timeout=30)
    csrf = re.search(r"name='csrf_token' value='([^']+)'", browser.get("/login").text).group(1)  # type: ignore[union-attr]
    assert browser.post("/login", data={"username": "admin", "password": PASSWORD,
                                        "csrf_token": csrf}).status_code == 303
    page_csrf = re.search(r"name='csrf-token' content='([^']+)'", browser.get("/").text).group(1)  # type: ignore[union-attr]
    yield s, browser, page_csrf
    browser.close()


def row_ids(html: str) -> list[str]:
    return re.findall(r'data-row="([a-z_]+:\d+)"', html)


def test_filters_search_and_keyset_paging(signed_in: tuple[OptioServer, httpx.Client, str]) -> None:
    s, browser, _csrf = signed_in
    for name in ("alpha", "beta"):
        s.api("POST", "/api/jobs", json={"name": name, "prompt_template": "p",
                                         "agent_config": {"command": "true"}}).raise_for_status()
    made = [s.api("POST", f"/api/jobs/{'alpha' if i % 2 else 'beta'}/runs", json={}).json()["id"] for i in range(5)]
    seen: list[str] = []
    url = "/tasks?limit=2"
    while url:
        html = browser.get(url).text
        page = row_ids(html)
        assert len(page) <= 2
        seen += page
        nxt = re.search(r'rel="next" href="([^"]+)"', html)
        url = nxt.group(1).replace("&amp;", "&") if nxt else ""
    assert seen == [f"job_run:{i}" for i in reversed(made)]
    alpha = row_ids(browser.get("/tasks", params={"job": "alpha"}).text)
    assert alpha == [f"job_run:{i}" for i in reversed(made) if (made.index(i) % 2)]
    assert row_ids(browser.get("/tasks", params={"q": "BET"}).text) == [f"job_run:{i}" for i in reversed(made)
                                                                        if not made.index(i) % 2]
    assert row_ids(browser.get("/tasks", params={"type": "repo_task"}).text) == []
    bad = browser.get("/tasks", params={"state": "bogus"})
    assert bad.status_code == 422 and "unknown state" in bad.text and "text/html" in bad.headers["content-type"]


def test_bulk_retry_and_cancel_and_csrf(signed_in: tuple[OptioServer, httpx.Client, str]) -> None:
    s, browser, csrf = signed_in
    s.api("POST", "/api/jobs", json={"name": "boom", "prompt_template": "p",
                                     "agent_config": {"command": "exit 1"}}).raise_for_status()
    s.api("POST", "/api/jobs", json={"name": "slow", "prompt_template": "p",
                                     "agent_config": {"command": "sleep 60"}}).raise_for_status()
    failed = [s.api("POST", "/api/jobs/boom/runs", json={}).json()["id"] for _ in range(2)]
    for run_id in failed:
        s.wait_state(f"/api/runs/{run_id}", {"failed"})
    slow = s.api("POST", "/api/jobs/slow/runs", json={}).json()["id"]
    s.wait_state(f"/api/runs/{slow}", {"running"})
    ids = [f"job_run:{i}" for i in failed] + [f"job_run:{slow}"]
    # Without the session's CSRF token nothing happens.
    refused = browser.post("/tasks", data={"csrf_token": "wrong", "action": "retry", "ids": ids})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert all(s.api("GET", f"/api/runs/{i}").json()["attempts"] == 1 for i in failed)
    # Retry the selection: the failed runs are retried, the running one (wrong state) is skipped.
    res = browser.post("/tasks", data={"csrf_token": csrf, "action": "retry", "ids": ids,
                                       "back": "/tasks?state=failed"})
    assert res.status_code == 303 and res.headers["location"] == "/tasks?state=failed"
    for run_id in failed:
        events = [e["event"] for e in s.api("GET", f"/api/runs/{run_id}/events").json()]
        assert "retry_requested" in events
    cancel = browser.post("/tasks", data={"csrf_token": csrf, "action": "cancel", "ids": [f"job_run:{slow}"]})
    assert cancel.status_code == 303
    assert s.wait_state(f"/api/runs/{slow}", {"cancelled"})["state"] == "cancelled"
    assert browser.post("/tasks", data={"csrf_token": csrf, "action": "explode", "ids": ids}).status_code == 422


def test_forms_name_the_bad_field_and_never_fail_with_5xx(signed_in: tuple[OptioServer, httpx.Client, str]) -> None:
    s, browser, csrf = signed_in
    bad_repo = browser.post("/repos", data={"csrf_token": csrf, "remote_url": "/definitely/not/allowed"})
    assert bad_repo.status_code in (403, 422) and "remote_url" in bad_repo.text
    bad_task = browser.post("/repos/nope/tasks", data={"csrf_token": csrf, "title": "t", "prompt": "p"})
    assert bad_task.status_code == 404
    s.api("POST", "/api/jobs", json={"name": "needs", "prompt_template": "Hi {{WHO}}",
                                     "agent_config": {"command": "true"}}).raise_for_status()
    missing = browser.post("/jobs/needs/run", data={"csrf_token": csrf})
    assert missing.status_code == 422 and "params.WHO" in missing.text
    ran = browser.post("/jobs/needs/run", data={"csrf_token": csrf, "param.WHO": "you"})
    assert ran.status_code == 303 and re.fullmatch(r"/runs/\d+", ran.headers["location"])
    assert browser.get(ran.headers["location"]).status_code == 200
    assert browser.get("/tasks/99999").status_code == 404
    # Text from users and agents is escaped on every page.
    s.api("POST", "/api/jobs", json={"name": "x", "description": "<script>alert(1)</script>",
                                     "prompt_template": "p", "agent_config": {"command": "true"}}).raise_for_status()
    jobs_page = browser.get("/jobs").text
    assert "<script>alert(1)</script>" not in jobs_page and "&lt;script&gt;alert(1)&lt;/script&gt;" in jobs_page
    assert browser.get("/runs/1%20").status_code == 422
    # Signed out, every page sends the browser to the sign-in form.
    anonymous = httpx.Client(base_url=s.url)
    for path in ("/", "/tasks", "/costs", "/settings"):
        res = anonymous.get(path)
        assert res.status_code == 303 and res.headers["location"] == "/login", path
    assert anonymous.post("/tasks", data={"action": "retry", "ids": "job_run:1"}).status_code == 303


def test_admin_changes_a_role_and_a_member_cannot(signed_in: tuple[OptioServer, httpx.Client, str]) -> None:
    s, browser, csrf = signed_in
    s.api("PUT", "/api/members/dana", json={"role": "viewer"}).raise_for_status()
    assert 'aria-label="role of dana"' in browser.get("/settings").text
    res = browser.post("/settings/members", data={"csrf_token": csrf, "username": "dana", "role": "member"})
    assert res.status_code == 303
    roles = {m["username"]: m["role"] for m in s.api("GET", "/api/members").json()}
    assert roles["dana"] == "member"
    assert browser.post("/settings/members", data={"csrf_token": csrf, "username": "dana",
                                                   "role": "owner"}).status_code == 422
    assert browser.post("/settings/members", data={"csrf_token": csrf, "username": "../x",
                                                   "role": "viewer"}).status_code == 422
    actions = [e["action"] for e in s.api("GET", "/api/audit").json()["items"]]
    assert "member.role_change" in actions and "web_set_member" in actions


def sign_in(s: OptioServer, username: str, password: str) -> tuple[httpx.Client, str]:
    browser = httpx.Client(base_url=s.url, timeout=30)
    csrf = re.search(r"name='csrf_token' value='([^']+)'", browser.get("/login").text).group(1)  # type: ignore[union-attr]
    assert browser.post("/login", data={"username": username, "password": password,
                                        "csrf_token": csrf}).status_code == 303
    page_csrf = re.search(r"name='csrf-token' content='([^']+)'", browser.get("/").text).group(1)  # type: ignore[union-attr]
    return browser, page_csrf


def test_api_keys_are_created_once_and_revoked_from_settings(
        signed_in: tuple[OptioServer, httpx.Client, str]) -> None:
    s, browser, csrf = signed_in
    # Without the session's CSRF token no key is made.
    assert browser.post("/settings/apikeys", data={"csrf_token": "wrong", "name": "ci"}).status_code == 403
    assert all(k["name"] != "ci" for k in s.api("GET", "/api/apikeys").json())
    made = browser.post("/settings/apikeys", data={"csrf_token": csrf, "name": "ci"})
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    key = re.search(r'<code class="api-key">([^<]+)</code>', made.text).group(1)  # type: ignore[union-attr]
    assert s.api("GET", "/api/me", token=key).json()["username"] == "admin"
    again = browser.get("/settings").text
    assert key not in again and "<td>ci</td>" in again  # shown once: the page lists it, never the key again
    key_id = next(k["id"] for k in s.api("GET", "/api/apikeys").json() if k["name"] == "ci")
    assert browser.post("/settings/apikeys", data={"csrf_token": csrf, "name": ""}).status_code == 422
    assert browser.post(f"/settings/apikeys/{key_id}/revoke", data={"csrf_token": "wrong"}).status_code == 403
    assert s.api("GET", "/api/me", token=key).status_code == 200
    revoked = browser.post(f"/settings/apikeys/{key_id}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 303 and revoked.headers["location"] == "/settings"
    assert s.api("GET", "/api/me", token=key).status_code == 401
    assert f'action="/settings/apikeys/{key_id}/revoke"' not in browser.get("/settings").text


def test_a_viewer_manages_only_their_own_keys(signed_in: tuple[OptioServer, httpx.Client, str]) -> None:
    s, _admin, _csrf = signed_in
    admin_key = s.api("POST", "/api/apikeys", json={"name": "admin-key"}).json()
    s.api("PUT", "/api/members/vera", json={"role": "viewer"}).raise_for_status()
    assert s.api("PUT", "/api/users/vera/password", json={"password": "vera-viewer-password"}).status_code == 204
    browser, csrf = sign_in(s, "vera", "vera-viewer-password")
    try:
        made = browser.post("/settings/apikeys", data={"csrf_token": csrf, "name": "vera-key"})
        assert made.status_code == 200, made.text
        key = re.search(r'<code class="api-key">([^<]+)</code>', made.text).group(1)  # type: ignore[union-attr]
        # The key acts with vera's role: it reads, it cannot change anything.
        assert s.api("GET", "/api/me", token=key).json()["username"] == "vera"
        assert s.api("POST", "/api/jobs", token=key, json={"name": "x", "prompt_template": "p"}).status_code == 403
        # Someone else's key is not hers to revoke, and stays working.
        other = browser.post(f"/settings/apikeys/{admin_key['id']}/revoke", data={"csrf_token": csrf})
        assert other.status_code == 404
        assert s.api("GET", "/api/me", token=admin_key["key"]).status_code == 200
        assert "admin-key" not in browser.get("/settings").text
    finally:
        browser.close()


def test_work_on_a_ticket_from_the_tickets_page(signed_in: tuple[OptioServer, httpx.Client, str],
                                                tmp_path: Path) -> None:
    s, browser, csrf = signed_in
    remote = make_remote(tmp_path, "tickets.git")
    s.api("POST", "/api/repos", json={"remote_url": str(remote), "name": "demo"}).raise_for_status()
    s.api("POST", "/api/tickets", json={"title": "Add a greeting", "body": "say hi", "repo": "demo"}
          ).raise_for_status()
    s.api("POST", "/api/tickets", json={"title": "Repo-less"}).raise_for_status()
    page = browser.get("/tickets").text
    assert 'action="/tickets/1/work"' in page and 'action="/tickets/2/work"' in page
    assert browser.post("/tickets/1/work", data={"csrf_token": "wrong", "repo": "demo"}).status_code == 403
    assert s.api("GET", "/api/tickets/1").json()["task_id"] is None
    res = browser.post("/tickets/1/work", data={"csrf_token": csrf, "repo": "demo", "command": "echo hi > hi.txt"})
    assert res.status_code == 303, res.text
    task_id = int(res.headers["location"].rsplit("/", 1)[1])
    assert s.api("GET", "/api/tickets/1").json()["task_id"] == task_id
    task = s.api("GET", f"/api/repo-tasks/{task_id}").json()
    assert task["title"] == "Add a greeting" and task["prompt"] == "Add a greeting\n\nsay hi" and task["repo"] == "demo"
    after = browser.get("/tickets").text
    assert 'action="/tickets/1/work"' not in after and f'href="/tasks/{task_id}"' in after
    # Twice is refused, as is a ticket with no repo given, by the same rules as the API.
    again = browser.post("/tickets/1/work", data={"csrf_token": csrf, "repo": "demo"})
    assert again.status_code == 409 and "already handled" in again.text
    no_repo = browser.post("/tickets/2/work", data={"csrf_token": csrf, "repo": ""})
    assert no_repo.status_code == 409 and "repo" in no_repo.text
    # A viewer sees no such form and is refused if posting anyway.
    s.api("PUT", "/api/members/tess", json={"role": "viewer"}).raise_for_status()
    assert s.api("PUT", "/api/users/tess/password", json={"password": "tess-viewer-password"}).status_code == 204
    viewer, viewer_csrf = sign_in(s, "tess", "tess-viewer-password")
    try:
        assert 'action="/tickets/2/work"' not in viewer.get("/tickets").text
        refused = viewer.post("/tickets/2/work", data={"csrf_token": viewer_csrf, "repo": "demo"})
        assert refused.status_code == 403
        assert s.api("GET", "/api/tickets/2").json()["task_id"] is None
    finally:
        viewer.close()
