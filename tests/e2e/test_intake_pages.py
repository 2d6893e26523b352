"""The dashboard's intake pages: triggers, blueprints and templates, by form posts and in a real browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.test_dashboard_browser import CHROMIUM, FLAGS, Watch
from tests.support.git_remote import make_remote
from tests.support.optio_server import OptioServer

pytestmark = [pytest.mark.slow]
PASSWORD = "intake-admin-password"


def sign_in(s: OptioServer, username: str, password: str) -> tuple[httpx.Client, str]:
    browser = httpx.Client(base_url=s.url, timeout=30)
    csrf = re.search(r"name='csrf_token' value='([^']+)'", browser.get("/login").text).group(1)  # type: ignore[union-attr]
    assert browser.post("/login", data={"username": username, "password": password,
                                        "csrf_token": csrf}).status_code == 303
    page_csrf = re.search(r"name='csrf-token' content='([^']+)'", browser.get("/").text).group(1)  # type: ignore[union-attr]
    return browser, page_csrf


def setup_intake(s: OptioServer, tmp: Path) -> dict[str, Any]:
    """A job with a manual and a webhook trigger, and a blueprint on a repo with one parameter."""
    s.api("POST", "/api/jobs", json={"name": "nightly", "prompt_template": "p",
                                     "agent_config": {"command": "echo fired"}}).raise_for_status()
    manual = s.api("POST", "/api/triggers", json={"type": "manual", "target": "nightly"}).json()
    hook = s.api("POST", "/api/triggers", json={"type": "webhook", "target": "nightly"}).json()
    remote = make_remote(tmp, "intake.git")
    s.api("POST", "/api/repos", json={"remote_url": str(remote), "name": "demo"}).raise_for_status()
    bp = s.api("POST", "/api/blueprints", json={
        "name": "bump", "repo": "demo", "title_template": "Bump {{package}}", "prompt_template": "Bump it",
        "agent_type": "script", "agent_config": {"command": "true"},
        "params_schema": {"package": {"required": True, "description": "what to bump"}}}).json()
    return {"manual": manual["id"], "hook": hook["id"], "blueprint": bp["id"]}


@pytest.fixture
def intake(optio_server: OptioServer, tmp_path: Path) -> Iterator[tuple[OptioServer, dict[str, Any]]]:
    s = optio_server
    assert s.api("PUT", "/api/me/password", json={"password": PASSWORD}).status_code == 204
    yield s, setup_intake(s, tmp_path)


def test_trigger_and_template_forms_for_members_not_viewers(intake: tuple[OptioServer, dict[str, Any]]) -> None:
    s, ids = intake
    browser, csrf = sign_in(s, "admin", PASSWORD)
    s.api("PUT", "/api/members/val", json={"role": "viewer"}).raise_for_status()
    assert s.api("PUT", "/api/users/val/password", json={"password": "val-viewer-password"}).status_code == 204
    viewer, viewer_csrf = sign_in(s, "val", "val-viewer-password")
    try:
        page = browser.get("/triggers").text
        assert f"/api/hooks/{ids['hook']}" in page and f'action="/triggers/{ids["manual"]}/fire"' in page
        assert 'href="/triggers"' in browser.get("/").text  # the nav's Intake link
        # Without the session's CSRF token nothing happens.
        assert browser.post(f"/triggers/{ids['manual']}/pause", data={"csrf_token": "x"}).status_code == 403
        res = browser.post(f"/triggers/{ids['manual']}/pause", data={"csrf_token": csrf})
        assert res.status_code == 303 and s.api("GET", f"/api/triggers/{ids['manual']}").json()["paused"]
        assert f'action="/triggers/{ids["manual"]}/fire"' not in browser.get("/triggers").text  # paused: no Fire
        browser.post(f"/triggers/{ids['manual']}/resume", data={"csrf_token": csrf})
        assert not s.api("GET", f"/api/triggers/{ids['manual']}").json()["paused"]
        # A viewer sees no buttons and is refused when posting anyway.
        seen = viewer.get("/triggers").text
        assert "/fire" not in seen and "/delete" not in seen and "/pause" not in seen
        assert viewer.post(f"/triggers/{ids['hook']}/delete", data={"csrf_token": viewer_csrf}).status_code == 403
        assert viewer.post(f"/blueprints/{ids['blueprint']}/run",
                           data={"csrf_token": viewer_csrf, "param.package": "x"}).status_code == 403
        assert viewer.post("/templates/task", data={"csrf_token": viewer_csrf, "body": "x"}).status_code == 403
        assert 'action="/blueprints/' not in viewer.get(f"/blueprints/{ids['blueprint']}").text
        # Members delete; a missing blueprint is a 404 page.
        assert browser.post(f"/triggers/{ids['hook']}/delete", data={"csrf_token": csrf}).status_code == 303
        assert s.api("GET", f"/api/triggers/{ids['hook']}").status_code == 404
        assert browser.get("/blueprints/nope").status_code == 404
        # The template library: built-in until a workspace default is set here; a bad one names the field.
        assert "built-in" in browser.get("/templates").text
        bad = browser.post("/templates/task", data={"csrf_token": csrf, "body": "{{nosuch_var}}", "version": "0"})
        assert bad.status_code == 422 and "body" in bad.text
        ok = browser.post("/templates/task", data={"csrf_token": csrf, "body": "Do: {{prompt}}", "version": "0"})
        assert ok.status_code == 303, ok.text[:300]
        shown = s.api("GET", "/api/templates/task").json()
        assert shown["source"] == "workspace" and shown["body"] == "Do: {{prompt}}"
        assert "workspace default" in browser.get("/templates").text
        browser.post("/templates/task", data={"csrf_token": csrf, "body": "", "version": "1"})
        assert s.api("GET", "/api/templates/task").json()["source"] == "builtin"
    finally:
        browser.close()
        viewer.close()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
def test_fire_a_trigger_and_run_a_blueprint_in_a_browser(intake: tuple[OptioServer, dict[str, Any]]) -> None:
    s, ids = intake
    sync_api = pytest.importorskip("playwright.sync_api")
    playwright = sync_api.sync_playwright().start()
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    try:
        context = chromium.new_context(base_url=s.url)
        watch = Watch(context)
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/$"))
        page.get_by_role("link", name="Intake").click()
        page.wait_for_url(re.compile(r"/triggers$"))
        page.get_by_role("button", name=f"Fire trigger {ids['manual']}").click()
        page.wait_for_url(re.compile(r"/runs/\d+$"))
        run_id = int(page.url.rsplit("/", 1)[1])
        s.wait_state(f"/api/runs/{run_id}", {"completed"})
        page.goto("/triggers")
        assert page.get_by_role("link", name=f"job run {run_id}").count() == 1
        page.get_by_role("link", name="Blueprints").click()
        page.get_by_role("link", name="bump").click()
        page.wait_for_url(re.compile(rf"/blueprints/{ids['blueprint']}$"))
        page.get_by_label("package").fill("left-pad")
        page.get_by_role("button", name="Run bump").click()
        page.wait_for_url(re.compile(r"/tasks/\d+$"))
        task = s.api("GET", f"/api/repo-tasks/{page.url.rsplit('/', 1)[1]}").json()
        assert task["title"] == "Bump left-pad"
        page.goto("/templates")
        page.wait_for_load_state("load")
        watch.check()
    finally:
        chromium.close()
        playwright.stop()
