"""GitLab's shapes as Optio's, with no I/O: paths, API roots, closing lines, pipeline statuses, reviews, hooks."""

from __future__ import annotations

import pytest

from optio.forge.gitlab import mapping
from optio.forge.gitlab.api import retry_after


@pytest.mark.parametrize(("remote", "path"), [
    ("https://gitlab.com/acme/widget.git", "acme/widget"),
    ("https://gitlab.example.com/group/sub/proj", "group/sub/proj"),
    ("https://gitlab.example.com/group/sub/proj/-/tree/main", "group/sub/proj"),
    ("git@gitlab.com:acme/widget.git", "acme/widget"),
    ("http://127.0.0.1:8080/a/b.git", "a/b"),
])
def test_project_path_of_a_remote(remote: str, path: str) -> None:
    assert mapping.project_path(remote) == path


def test_a_remote_without_a_group_is_refused() -> None:
    with pytest.raises(ValueError):
        mapping.project_path("https://gitlab.com/widget.git")


def test_api_root_is_the_repos_api_url_else_the_remotes_host() -> None:
    assert mapping.api_base("https://gitlab.com/a/b.git", None) == "https://gitlab.com"
    assert mapping.api_base("https://git.corp:8443/a/b.git", None) == "https://git.corp:8443"
    assert mapping.api_base("https://git.corp/a/b.git", "https://api.corp/api/v4/") == "https://api.corp"
    assert mapping.api_base("git@gitlab.com:a/b.git", None) == mapping.DEFAULT_API_URL


@pytest.mark.parametrize(("ref", "line"), [
    ("#4", "Closes #4"),
    ("gitlab:#4", "Closes #4"),
    ("acme/widget#4", "Closes #4"),
    ("other/proj#4", "Closes other/proj#4"),
    ("https://gitlab.com/acme/widget/-/issues/9", "Closes #9"),
    ("local#3", None),
    (None, None),
])
def test_closes_line_only_for_an_issue(ref: str | None, line: str | None) -> None:
    assert mapping.closes_line(ref, "acme/widget") == line


def test_draft_titles() -> None:
    assert mapping.draft_title("Fix") == "Draft: Fix"
    assert mapping.draft_title("Draft: Fix") == "Draft: Fix"
    assert mapping.ready_title("Draft: Fix") == "Fix"
    assert mapping.ready_title("[Draft] Fix") == "Fix"


@pytest.mark.parametrize(("status", "mapped"), [
    ("created", ("pending", None)), ("pending", ("pending", None)), ("running", ("pending", None)),
    ("manual", ("pending", None)), ("success", ("passing", None)), ("failed", ("failing", None)),
    ("canceled", ("error", "could_not_run")),
])
def test_pipeline_status(status: str, mapped: tuple[str, str | None]) -> None:
    assert mapping.ci_status(status) == mapped


def test_ci_of_a_pipeline_on_another_sha_is_pending() -> None:
    ci = mapping.ci_info("b" * 40, {"sha": "a" * 40, "status": "failed"}, "boom")
    assert (ci.status, ci.output) == ("pending", "")


def test_mergeability() -> None:
    assert mapping.mergeable({"has_conflicts": True, "merge_status": "can_be_merged"}) is False
    assert mapping.mergeable({"has_conflicts": False, "merge_status": "can_be_merged"}) is True
    assert mapping.mergeable({"has_conflicts": False, "merge_status": "checking"}) is None


def _note(id: int, body: str, **extra: object) -> dict[str, object]:
    return {"id": id, "body": body, "system": False, "resolvable": True, "resolved": False,
            "author": {"username": "rita"}, "created_at": f"2026-01-01T00:00:0{id}Z", "type": "DiscussionNote",
            **extra}


def test_review_from_unresolved_discussions_with_diff_notes() -> None:
    diff = _note(3, "use logging", type="DiffNote",
                 position={"new_path": "app.py", "new_line": 7, "head_sha": "h1"})
    review = mapping.review_from(head_sha="h2", discussions=[
        {"notes": [_note(2, "rename it")]}, {"notes": [diff]},
        {"notes": [_note(1, "resolved one", resolved=True)]}], approvals=None)
    assert review is not None and review.verdict == "request_changes"
    assert review.comments == "rename it\napp.py:7: use logging"
    assert (review.id, review.head_sha, review.author) == (3, "h1", "gitlab:rita")


def test_review_head_of_a_general_note_is_the_version_it_was_written_on() -> None:
    versions = [{"id": 2, "head_commit_sha": "h2", "created_at": "2026-01-01T00:00:05Z"},
                {"id": 1, "head_commit_sha": "h1", "created_at": "2026-01-01T00:00:00Z"}]
    review = mapping.review_from(head_sha="h2", discussions=[{"notes": [_note(3, "no")]}], approvals=None,
                                 versions=versions)
    assert review is not None and review.head_sha == "h1"


def test_approval_counts_only_once_the_rule_is_met() -> None:
    approved = {"approved_by": [{"user": {"username": "rita"}}], "approvals_left": 0}
    review = mapping.review_from(head_sha="h", discussions=[], approvals=approved)
    assert review is not None and (review.verdict, review.author) == ("approve", "gitlab:rita")
    assert mapping.review_from(head_sha="h", discussions=[], approvals={**approved, "approvals_left": 1}) is None


def test_optio_marker_names_the_reviewer_and_is_not_shown() -> None:
    body = mapping.review_marker("review-agent:codex", "request_changes") + "needs tests"
    review = mapping.review_from(head_sha="h", discussions=[{"notes": [_note(5, body)]}], approvals=None)
    assert review is not None and (review.author, review.comments) == ("review-agent:codex", "needs tests")


def test_hook_events() -> None:
    mr = {"object_attributes": {"iid": 3, "action": "merge", "source_branch": "optio/9"}}
    assert mapping.hook_events("Merge Request Hook", mr) == [("merged", 3, "optio/9")]
    pipe = {"object_attributes": {"ref": "optio/9"}, "merge_request": {"iid": 3, "source_branch": "optio/9"}}
    assert mapping.hook_events("Pipeline Hook", pipe) == [("ci", 3, "optio/9")]
    note = {"object_attributes": {"noteable_type": "Issue"}}
    assert mapping.hook_events("Note Hook", note) == []
    assert mapping.hook_events("Push Hook", {"ref": "refs/heads/main"}) == [("push", None, "main")]
    assert mapping.hook_events("Push Hook", {"ref": "refs/tags/v1"}) == []
    assert mapping.hook_events("Wiki Page Hook", {}) == []


def test_retry_after_from_gitlabs_headers() -> None:
    assert retry_after({"Retry-After": "7"}, default=1.0) == 7.0
    assert retry_after({"RateLimit-Reset": "1020"}, default=1.0, now=1000.0) == 20.0
    assert retry_after({}, default=15.0) == 15.0
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, default=3.0, now=1445412470.0) == 10.0
