"""Hosted forges' PRs (GitHub, GitLab) are listed with the local ones: `/api/prs`, `optio pr list` and the
dashboard's `/prs`, and their own page `/prs/REPO_ID-NUMBER` shows them with their diff summary, as do
`optio pr show` and `optio pr diff`. A busy forge reads as a message naming it, never a 500."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.forge_harness import HARNESSES, ForgeHarness, GitHubHarness, GitLabHarness

pytestmark = pytest.mark.slow
PASSWORD = "hosted-list-password"
AGENT = "printf 'one\\ntwo\\n' > added.txt; rm README.md"


@pytest.fixture(params=["github", "gitlab"])
def forge(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ForgeHarness]:
    harness = HARNESSES[request.param](tmp_path, {})
    try:
        yield harness
    finally:
        harness.close()


def signed_in(forge: ForgeHarness) -> httpx.Client:
    s = forge.server
    assert s.api("PUT", "/api/me/password", json={"password": PASSWORD}).status_code == 204
    browser = httpx.Client(base_url=s.url, timeout=30)
    csrf = re.search(r"name='csrf_token' value='([^']+)'", browser.get("/login").text).group(1)  # type: ignore[union-attr]
    assert browser.post("/login", data={"username": "admin", "password": PASSWORD,
                                        "csrf_token": csrf}).status_code == 303
    return browser


def make_busy(forge: ForgeHarness, seconds: float) -> None:
    if isinstance(forge, GitHubHarness):
        forge.github.rate_limited_until = time.time() + seconds if seconds else 0.0
    elif isinstance(forge, GitLabHarness):
        forge.gitlab.rate_limit_for(seconds)


def test_hosted_prs_are_listed_and_shown_with_their_diff(forge: ForgeHarness) -> None:
    forge.add_repo("demo", require_approval=True)
    res = forge.server.cli("task", "new", "--repo", "demo", "--title", "Hosted listed", "--prompt", "p",
                           "--command", AGENT, "--json", check=True)
    task_id = int(json.loads(res.stdout)["id"])
    forge.server.wait_state(f"/api/repo-tasks/{task_id}", {"pr_opened"}, timeout=120)
    listed = forge.server.api("GET", "/api/prs").json()
    [pr] = [p for p in listed if p["task_id"] == task_id]
    assert pr["forge"] == forge.kind and pr["id"] is None and pr["state"] == "open" and pr["repo"] == "demo"
    assert forge.server.api("GET", "/api/prs", params={"state": "merged"}).json() == []
    number, repo_id = pr["number"], pr["repo_id"]
    table = forge.server.cli("pr", "list", check=True).stdout
    assert "demo" in table and forge.kind in table and "Hosted listed" in table
    # The diff, from the forge: one file added, one deleted.
    diff = forge.server.api("GET", "/api/prs/diff", params={"ref": f"task:{task_id}"}).json()
    files = {f["path"]: (f["status"], f["additions"], f["deletions"]) for f in diff["files"]}
    assert files == {"added.txt": ("added", 2, 0), "README.md": ("deleted", 0, 1)}, diff
    out = forge.server.cli("pr", "diff", f"demo#{number}", check=True).stdout
    assert "added.txt" in out and "+2 -0" in out and "2 files changed, +2 -1" in out
    shown = forge.server.cli("pr", "show", "--task", str(task_id), check=True).stdout
    assert "README.md" in shown and "2 files changed" in shown
    browser = signed_in(forge)
    try:
        listing = browser.get("/prs").text
        assert f'href="/prs/{repo_id}-{number}"' in listing and "Hosted listed" in listing
        page = browser.get(f"/prs/{repo_id}-{number}")
        assert page.status_code == 200
        assert 'data-path="added.txt"' in page.text and 'data-path="README.md"' in page.text
        assert "2 files changed" in page.text and f"lives on {forge.kind}" in page.text
        assert "/approve" not in page.text, "a hosted PR is acted on at its forge"
        # The forge is busy: the list says so, the PR page is a 503 page naming the wait, the API skips it.
        make_busy(forge, 120)
        busy_list = browser.get("/prs")
        assert busy_list.status_code == 200 and "data-forge-unavailable" in busy_list.text
        assert f"demo: {forge.kind} is busy" in busy_list.text and "try again in" in busy_list.text
        busy_page = browser.get(f"/prs/{repo_id}-{number}")
        assert busy_page.status_code == 503 and "try again in" in busy_page.text
        api = forge.server.api("GET", "/api/prs")
        assert api.status_code == 200 and "busy" in api.headers["x-optio-unavailable"]
        assert browser.get(f"/prs/{repo_id}-{number + 40}").status_code in (404, 503)
    finally:
        make_busy(forge, 0)
        browser.close()
