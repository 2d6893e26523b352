"""Vendor review agents report through review.json: validated on read, posted when valid, never an approval
when missing or invalid (a failed attempt, retried by the retry rule)."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import pytest

from optio.control.review_file import REVIEW_FILE_MAX_BYTES, load_review_file
from optio.domain.actions import PostReview, Transition
from optio.domain.reconcile.review import ReviewComment, ReviewReport, ReviewRunSnapshot, decide_pr_review
from optio.domain.snapshot import Capacity, JobRunSnapshot, ProcessStatus, ProcessView, RunView
from optio.domain.states import RunKind

NOW = datetime(2026, 1, 1, tzinfo=UTC)
VALID = {"verdict": "request_changes", "summary": "Close.",
         "comments": [{"path": "src/a.py", "line": 3, "body": "rename this"}]}


def structured(code: int, report: ReviewReport | None, error: str | None = None, *, attempts: int = 1,
               max_retries: int = 1) -> ReviewRunSnapshot:
    base = JobRunSnapshot(
        now=NOW, run=RunView(id=5, kind=RunKind.PR_REVIEW, state="running", version=3, attempts=attempts),
        max_retries=max_retries, capacity=Capacity(),
        process=ProcessView(attempt=attempts, status=ProcessStatus.EXITED, exit_code=code, exit_reason="exited"),
    )
    return ReviewRunSnapshot(**{f.name: getattr(base, f.name) for f in fields(base)}, structured=True,
                             report=report, report_error=error)


def write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "review.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_a_valid_file_becomes_the_report(tmp_path: Path) -> None:
    report, error = load_review_file(write(tmp_path, {**VALID, "extra": "ignored"}))
    assert error is None
    assert report == ReviewReport("request_changes", "Close.", (ReviewComment("src/a.py", 3, "rename this"),))
    assert load_review_file(write(tmp_path, {"verdict": "approve", "summary": ""}))[0] == ReviewReport("approve", "")


@pytest.mark.parametrize(("content", "why"), [
    ("{not json", "not JSON"),
    ({"verdict": "lgtm", "summary": "x"}, "verdict"),
    ({"summary": "x"}, "verdict: Field required"),
    ({"verdict": "approve", "summary": "x", "comments": [{"path": "a", "line": 0, "body": "b"}]}, "comments.0.line"),
    ({"verdict": "approve", "summary": "x", "comments": [{"path": "a", "body": "b"}]}, "comments.0.line"),
    ("[1, 2]", "the file"),
])
def test_an_invalid_file_says_why(tmp_path: Path, content: object, why: str) -> None:
    report, error = load_review_file(write(tmp_path, content))
    assert report is None and error is not None and why in error


def test_missing_linked_oversized_files_are_no_report(tmp_path: Path) -> None:
    assert load_review_file(tmp_path / "review.json") == (None, "review.json was not written")
    target = write(tmp_path, VALID)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert load_review_file(link)[0] is None  # never followed: it could point at anything on the host
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert load_review_file(fifo)[0] is None  # never blocks
    big = write(tmp_path, {**VALID, "summary": "x" * (REVIEW_FILE_MAX_BYTES + 1)})
    assert "larger than" in (load_review_file(big)[1] or "")


def test_exit_zero_with_a_report_posts_it() -> None:
    report = ReviewReport("request_changes", "Close.", (ReviewComment("src/a.py", 3, "rename this"),))
    action = decide_pr_review(structured(0, report))
    assert isinstance(action, PostReview) and action.verdict == "request_changes" and action.to == "completed"


def test_exit_zero_without_a_valid_report_is_a_failed_attempt_never_an_approval() -> None:
    action = decide_pr_review(structured(0, None, "review.json was not written"))
    assert isinstance(action, Transition) and action.to == "queued" and action.event == "retry_scheduled"
    assert "review.json was not written" in action.patch["error"]
    last = decide_pr_review(structured(0, None, "review.json is not valid", attempts=2))
    assert isinstance(last, Transition) and last.to == "failed" and "verdict" not in last.patch


def test_a_failed_process_is_a_failed_attempt_even_with_an_approving_report() -> None:
    action = decide_pr_review(structured(1, ReviewReport("approve", "fine")))
    assert isinstance(action, Transition) and action.to == "queued" and "verdict" not in action.patch
