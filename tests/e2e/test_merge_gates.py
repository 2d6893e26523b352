"""Merging is gated by the server: red CI or a missing approval refuses any caller; only an admin's force,
which the audit log records, merges past them. Real `optio serve`, real CLI, real git remote and CI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow


def member_key(server: OptioServer, name: str, role: str = "member") -> str:
    res = server.api("PUT", f"/api/members/{name}", json={"role": role, "create_api_key": True})
    assert res.status_code in (200, 201), res.text
    return str(res.json()["api_key"])


def open_pr(server: OptioServer, repo: str, title: str) -> dict:
    task = json.loads(server.cli("task", "new", "--repo", repo, "--title", title, "--prompt", "p", "--command",
                                 "echo work > work.txt", "--json", check=True).stdout)
    server.wait_state(f"/api/repo-tasks/{task['id']}", {"pr_opened", "needs_attention"}, timeout=90)
    return server.api("GET", "/api/prs/resolve", params={"ref": str(task["id"])}).json()


def wait_ci(server: OptioServer, pr_id: int, status: str) -> dict:
    deadline = time.monotonic() + 60
    pr: dict = {}
    while time.monotonic() < deadline:
        pr = server.api("GET", f"/api/prs/{pr_id}").json()
        if pr["ci_status"] == status:
            return pr
        time.sleep(0.1)
    raise AssertionError(f"CI of PR {pr_id} never became {status}: {pr}")


def main_log(remote: Path) -> list[str]:
    return git("log", "--format=%s", "main", cwd=remote).splitlines()


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    # No automatic resumes: a red CI leaves the PR open and red, which is what the gates are tested on.
    s = OptioServer(tmp_path / "data", env={"OPTIO_MAX_AUTO_RESUMES": "0"}).start()
    try:
        yield s
    finally:
        s.stop()


def test_red_ci_refuses_everyone_but_the_audited_admin_force(server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    server.cli("repo", "add", str(remote), "--name", "red", "--ci-command", "test -f green.txt",
               "--require-approval", "--no-auto-merge", check=True)
    member = member_key(server, "mo")
    pr = open_pr(server, "red", "Red CI")
    pr = wait_ci(server, pr["id"], "failing")
    server.cli("pr", "approve", f"red#{pr['number']}", check=True)  # approved, but CI is red

    refused = server.api("POST", f"/api/prs/{pr['id']}/merge", token=member)
    assert refused.status_code == 409, refused.text
    assert "CI is failing" in refused.json()["error"]["message"]
    assert server.api("POST", f"/api/prs/{pr['id']}/merge").status_code == 409  # admin, no force
    cli = server.cli("pr", "merge", f"red#{pr['number']}")
    assert cli.returncode != 0 and "CI is failing" in cli.stdout + cli.stderr
    forced_by_member = server.api("POST", f"/api/prs/{pr['id']}/merge", token=member, json={"force": True})
    assert forced_by_member.status_code == 403
    assert server.api("POST", f"/api/prs/{pr['id']}/merge", json={"force": "yes"}).status_code == 422
    assert server.api("GET", f"/api/prs/{pr['id']}").json()["state"] == "open"
    assert main_log(remote) == ["initial"]

    server.cli("pr", "merge", f"red#{pr['number']}", "--force", check=True)
    assert server.api("GET", f"/api/prs/{pr['id']}").json()["state"] == "merged"
    assert main_log(remote) == [f"Red CI (#{pr['number']})", "initial"]
    rows = server.api("GET", "/api/audit", params={"action": "pr.force_merge"}).json()["items"]
    assert len(rows) == 1
    row = rows[0]
    assert row["actor"] == "admin" and row["target_id"] == str(pr["id"])
    assert row["detail"]["head_sha"] == pr["head_sha"] and row["detail"]["user"] == "admin"
    assert any("CI is failing" in b for b in row["detail"]["bypassed"])


def test_missing_approval_refuses_until_an_approving_review_of_the_head(server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    server.cli("repo", "add", str(remote), "--name", "gated", "--ci-command", "true", "--require-approval",
               "--no-auto-merge", check=True)
    member = member_key(server, "mia")
    pr = open_pr(server, "gated", "Needs approval")
    pr = wait_ci(server, pr["id"], "passing")

    for token in (member, None):
        refused = server.api("POST", f"/api/prs/{pr['id']}/merge", token=token)
        assert refused.status_code == 409, refused.text
        assert "approval required" in refused.json()["error"]["message"]
    server.api("POST", f"/api/prs/{pr['id']}/request-changes", json={"comment": "no"}).raise_for_status()
    assert server.api("POST", f"/api/prs/{pr['id']}/merge", token=member).status_code == 409
    server.api("POST", f"/api/prs/{pr['id']}/approve", token=member).raise_for_status()
    merged = server.api("POST", f"/api/prs/{pr['id']}/merge", token=member)
    assert merged.status_code == 200, merged.text
    assert merged.json()["state"] == "merged"
    assert main_log(remote) == [f"Needs approval (#{pr['number']})", "initial"]
    assert server.api("GET", "/api/audit", params={"action": "pr.force_merge"}).json()["items"] == []
