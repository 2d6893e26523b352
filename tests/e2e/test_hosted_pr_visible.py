"""A task's pull request on GitHub or GitLab is read from the forge: `optio pr show`, the task's PR fields and the
dashboard's PR panel show it though no local PR row exists; a busy forge answers 503 with Retry-After."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.forge_harness import HARNESSES, ForgeHarness, GitHubHarness

pytestmark = pytest.mark.slow
PASSWORD = "hosted-pr-password"


@pytest.fixture(params=["github", "gitlab"])
def forge(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ForgeHarness]:
    harness = HARNESSES[request.param](tmp_path, {})
    try:
        yield harness
    finally:
        harness.close()


def wait_for(forge: ForgeHarness, task_id: int, check: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    task: dict = {}
    while time.monotonic() < deadline:
        task = forge.server.api("GET", f"/api/repo-tasks/{task_id}").json()
        if task.get(check):
            return task
        time.sleep(0.3)
    raise AssertionError(f"task {task_id} never had {check}: {task}\n{forge.server.log()[-3000:]}")


def dashboard(forge: ForgeHarness) -> httpx.Client:
    s = forge.server
    assert s.api("PUT", "/api/me/password", json={"password": PASSWORD}).status_code == 204
    browser = httpx.Client(base_url=s.url, timeout=30)
    csrf = re.search(r"name='csrf_token' value='([^']+)'", browser.get("/login").text).group(1)  # type: ignore[union-attr]
    assert browser.post("/login", data={"username": "admin", "password": PASSWORD,
                                        "csrf_token": csrf}).status_code == 303
    return browser


def test_task_pr_is_read_from_the_hosted_forge(forge: ForgeHarness) -> None:
    forge.add_repo("demo", ci="true", require_approval=True)
    res = forge.server.cli("task", "new", "--repo", "demo", "--title", "Hosted PR", "--prompt", "p",
                           "--command", "echo hi > hi.txt", "--json", check=True)
    task_id = int(json.loads(res.stdout)["id"])
    forge.server.wait_state(f"/api/repo-tasks/{task_id}", {"pr_opened"}, timeout=120)
    deadline = time.monotonic() + 120
    task = wait_for(forge, task_id, "pr_number")
    while task["ci_status"] != "passing" and time.monotonic() < deadline:
        time.sleep(0.5)
        task = forge.server.api("GET", f"/api/repo-tasks/{task_id}").json()
    number = task["pr_number"]
    assert task["pr_state"] == "open" and task["ci_status"] == "passing", task
    assert task["pr_ref"] == f"demo#{number}" and task["pr_head_sha"] and task["pr_id"] is None
    assert task["review_status"] is None

    shown = forge.server.cli("task", "show", str(task_id), check=True).stdout
    assert f"pr_number: {number}" in shown and f"pr_ref: demo#{number}" in shown and "ci_status: passing" in shown

    out = forge.server.cli("pr", "show", "--task", str(task_id), check=True).stdout
    assert f"#{number} Hosted PR (demo) — open" in out and "CI: passing" in out and forge.kind in out
    by_number = json.loads(forge.server.cli("pr", "show", f"demo#{number}", "--json", check=True).stdout)
    assert by_number["number"] == number and by_number["task_id"] == task_id and by_number["forge"] == forge.kind
    assert by_number["head_sha"] == task["pr_head_sha"] and by_number["ci_status"] == "passing"
    # Acting goes to the forge itself: the CLI says so instead of posting to a local PR that does not exist.
    refused = forge.server.cli("pr", "approve", "--task", str(task_id))
    assert refused.returncode == 2 and forge.kind in refused.stdout + refused.stderr

    forge.approve("demo", task_id)
    approved = wait_for(forge, task_id, "review_status")
    assert approved["review_status"] == "approved" or approved["state"] == "completed", approved

    browser = dashboard(forge)
    try:
        page = browser.get(f"/tasks/{task_id}").text
        assert f"demo#{number} on {forge.kind}" in page and "No pull request yet" not in page
    finally:
        browser.close()


def test_busy_forge_is_a_503_with_retry_after(tmp_path: Path) -> None:
    forge = GitHubHarness(tmp_path, {})
    try:
        forge.add_repo("demo", require_approval=True)
        res = forge.server.cli("task", "new", "--repo", "demo", "--title", "Busy", "--prompt", "p",
                               "--command", "echo hi > hi.txt", "--json", check=True)
        task_id = int(json.loads(res.stdout)["id"])
        forge.server.wait_state(f"/api/repo-tasks/{task_id}", {"pr_opened"}, timeout=120)
        number = wait_for(forge, task_id, "pr_number")["pr_number"]
        forge.github.rate_limited_until = time.time() + 120
        busy = forge.server.api("GET", "/api/prs/resolve", params={"ref": f"#{number + 50}", "repo": "demo"})
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"]["code"] == "forge_busy" and int(busy.headers["retry-after"]) >= 1
        cli = forge.server.cli("pr", "show", f"demo#{number + 50}")
        assert cli.returncode != 0 and "forge cannot answer now" in cli.stdout + cli.stderr
        # The task itself still reads while its forge is busy.
        assert forge.server.api("GET", f"/api/repo-tasks/{task_id}").status_code == 200
    finally:
        forge.github.rate_limited_until = 0.0
        forge.close()
