"""Telling a hosted forge from its URL, its API root, and reading "wait until" from a forge's headers."""

from __future__ import annotations

import json

import pytest

from optio.forge.github.events import parse_delivery
from optio.forge.hosted import (
    default_api_url,
    detect_forge,
    issue_number,
    project_path,
    retry_after_s,
    task_of_branch,
)


@pytest.mark.parametrize(("remote", "explicit", "kind"), [
    ("https://github.com/acme/app", None, "github"),
    ("https://github.com/acme/app.git", None, "github"),
    ("git@github.com:acme/app.git", None, "github"),  # scp-like: detected (then asked for its https URL)
    ("ssh://git@github.com/acme/app.git", None, "github"),
    ("https://gitlab.com/group/sub/proj", None, "gitlab"),
    ("https://gitlab.example.com/group/proj", None, "local"),
    ("https://gitlab.example.com/group/proj", "gitlab", "gitlab"),
    ("https://ghe.example.com/acme/app", "github", "github"),
    ("/srv/git/app.git", None, "local"),
    ("file:///srv/git/app.git", None, "local"),
    ("https://GitHub.com./acme/app", None, "github"),
])
def test_forge_is_detected_from_the_url_unless_given(remote: str, explicit: str | None, kind: str) -> None:
    assert detect_forge(remote, explicit) == kind


def test_api_root_follows_from_the_remote() -> None:
    assert default_api_url("github", "https://github.com/acme/app") == "https://api.github.com"
    assert default_api_url("github", "https://ghe.example.com/acme/app") == "https://ghe.example.com/api/v3"
    assert default_api_url("github", "http://127.0.0.1:8080/acme/app.git") == "http://127.0.0.1:8080/api/v3"
    assert default_api_url("gitlab", "https://gitlab.example.com/g/s/p") == "https://gitlab.example.com/api/v4"
    assert default_api_url("local", "https://github.com/acme/app") is None


def test_project_path_names_owner_and_repo() -> None:
    assert project_path("https://github.com/acme/app.git") == "acme/app"
    assert project_path("https://gitlab.com/group/sub/proj/") == "group/sub/proj"
    with pytest.raises(ValueError, match="OWNER/REPO"):
        project_path("https://github.com/acme")


def test_wait_is_read_from_retry_after_or_an_exhausted_rate_limit() -> None:
    now = 1_000_000.0
    assert retry_after_s({"Retry-After": "42"}, now=now, default=5) == 42
    assert retry_after_s({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(now) + 20)}, now=now,
                         default=5) == 21
    assert retry_after_s({"RateLimit-Remaining": "0", "RateLimit-Reset": str(int(now) + 9)}, now=now, default=5) == 10
    # A budget that is not exhausted says nothing about waiting.
    assert retry_after_s({"X-RateLimit-Remaining": "10", "X-RateLimit-Reset": str(int(now) + 20)}, now=now,
                         default=5) == 5
    assert retry_after_s({"Retry-After": "0"}, now=now, default=5) == 1


def test_task_branches_and_issue_refs() -> None:
    assert task_of_branch("optio/12") == 12
    assert task_of_branch("optio/12-x") is None and task_of_branch("main") is None and task_of_branch(None) is None
    assert issue_number("acme/app#7") == 7 and issue_number("#3") == 3
    assert issue_number("local#4") is None and issue_number(None) is None


def _events(event: str, payload: dict) -> list[tuple[int, str, int | None]]:
    return [(e.number, e.kind, e.task_id) for e in parse_delivery(1, event, json.dumps(payload).encode(),
                                                                   default_branch="main")]


def test_github_deliveries_name_the_tasks_they_touch() -> None:
    pr = {"number": 5, "head": {"ref": "optio/9"}}
    assert _events("pull_request", {"pull_request": pr}) == [(5, "pr", 9)]
    assert _events("pull_request_review", {"pull_request": pr}) == [(5, "review", 9)]
    assert _events("pull_request", {"pull_request": {"number": 6, "head": {"ref": "feature"}}}) == []
    assert _events("check_run", {"check_run": {"pull_requests": [pr], "check_suite": {"head_branch": "optio/9"}}}) \
        == [(5, "ci", 9)]
    assert _events("check_suite", {"check_suite": {"pull_requests": [], "head_branch": "optio/4"}}) == [(0, "ci", 4)]
    assert _events("status", {"branches": [{"name": "optio/2"}, {"name": "main"}]}) == [(0, "ci", 2)]
    assert _events("push", {"ref": "refs/heads/optio/3"}) == [(0, "push", 3)]
    assert _events("push", {"ref": "refs/heads/main"}) == [(0, "base_moved", None)]
    assert _events("push", {"ref": "refs/heads/other"}) == []
    assert _events("ping", {"zen": "x"}) == []
    assert parse_delivery(1, "push", b"not json", default_branch="main") == []
