"""The review-run decision: exit codes are verdicts, vanished or timed-out agents are failed attempts."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optio.domain.actions import Noop, PostReview, StartAgent, Transition, target_state
from optio.domain.reconcile.review import ReviewRunSnapshot, decide_pr_review, read_verdict
from optio.domain.snapshot import Capacity, JobRunSnapshot, ProcessStatus, ProcessView, RunView
from optio.domain.states import RunKind, check_transition

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def snap(state: str = "running", attempts: int = 1, proc: ProcessView | None = None, intent: str | None = None,
         max_retries: int = 0) -> JobRunSnapshot:
    return JobRunSnapshot(
        now=NOW,
        run=RunView(id=5, kind=RunKind.PR_REVIEW, state=state, version=3, attempts=attempts, control_intent=intent),
        max_retries=max_retries, process=proc, capacity=Capacity(),
    )


def done(code: int, verdict_file: str | None) -> ReviewRunSnapshot:
    base = snap(proc=ProcessView(attempt=1, status=ProcessStatus.EXITED, exit_code=code, exit_reason="exited"))
    return ReviewRunSnapshot(**{f.name: getattr(base, f.name) for f in fields(base)}, verdict_file=verdict_file)


@pytest.mark.parametrize(("code", "verdict_file", "verdict"), [
    (0, "approve\n", "approve"), (0, "request_changes", "request_changes"), (1, "request_changes", "request_changes"),
    (1, "approve", "request_changes"),  # approval from a failed process does not count
    (0, None, "request_changes"), (0, "", "request_changes"), (0, "lgtm", "request_changes"),
])
def test_the_verdict_file_is_the_verdict(code: int, verdict_file: str | None, verdict: str) -> None:
    action = decide_pr_review(done(code, verdict_file))
    assert isinstance(action, Transition)
    assert action.to == "completed" and action.patch["verdict"] == verdict
    assert read_verdict(code, verdict_file).verdict == verdict
    assert (read_verdict(code, verdict_file).note is None) == (verdict_file is not None and verdict_file.strip()
                                                                in ("approve", "request_changes")
                                                                and not (code and "approve" in verdict_file))


@pytest.mark.parametrize(("code", "verdict_file", "verdict"), [
    (0, "approve", "approve"), (1, "request_changes", "request_changes"), (1, "approve", "request_changes"),
    (0, None, "request_changes"),
])
def test_on_a_hosted_forge_the_script_verdict_is_posted_through_the_forge(code: int, verdict_file: str | None,
                                                                          verdict: str) -> None:
    """No local PR row to write the review beside the run: the verdict is posted first, then the run completes."""
    base = done(code, verdict_file)
    action = decide_pr_review(ReviewRunSnapshot(**{f.name: getattr(base, f.name) for f in fields(base)
                                                   if f.name != "posts_verdict"}, posts_verdict=True))
    assert isinstance(action, PostReview) and action.verdict == verdict and action.to == "completed"


def test_exit_zero_without_a_verdict_file_does_not_approve() -> None:
    """What a PR that rewrote its review script to `exit 0` gets if nothing trusted wrote the file."""
    action = decide_pr_review(snap(proc=ProcessView(attempt=1, status=ProcessStatus.EXITED, exit_code=0,
                                                    exit_reason="exited")))
    assert isinstance(action, Transition) and action.patch["verdict"] == "request_changes"


def test_timeout_is_a_failed_attempt_not_a_verdict() -> None:
    action = decide_pr_review(snap(proc=ProcessView(attempt=1, status=ProcessStatus.EXITED, exit_code=None,
                                                    exit_reason="timeout")))
    assert isinstance(action, Transition) and action.to == "failed"


def test_vanished_process_fails() -> None:
    action = decide_pr_review(snap(proc=ProcessView(attempt=1, status=ProcessStatus.GONE)))
    assert isinstance(action, Transition) and action.to == "failed"


def test_queued_starts_and_alive_waits() -> None:
    assert isinstance(decide_pr_review(snap(state="queued", attempts=0)), StartAgent)
    alive = ProcessView(attempt=1, status=ProcessStatus.ALIVE, last_output_at=NOW)
    assert isinstance(decide_pr_review(snap(proc=alive)), Noop)


def test_cancel_wins_over_a_finished_process() -> None:
    done = ProcessView(attempt=1, status=ProcessStatus.EXITED, exit_code=0, exit_reason="exited")
    action = decide_pr_review(snap(proc=done, intent="cancel"))
    assert isinstance(action, Transition) and action.to == "cancelled"


@given(
    state=st.sampled_from(["queued", "running", "completed", "failed", "cancelled"]),
    status=st.sampled_from(list(ProcessStatus)),
    code=st.one_of(st.none(), st.integers(-15, 3)),
    reason=st.sampled_from(["exited", "timeout", "killed", "lost", "spawn_failed"]),
    attempts=st.integers(0, 3),
    intent=st.sampled_from([None, "cancel", "retry"]),
)
def test_decision_is_deterministic_and_allowed(state: str, status: ProcessStatus, code: int | None, reason: str,
                                               attempts: int, intent: str | None) -> None:
    s = snap(state=state, attempts=attempts, intent=intent,
             proc=ProcessView(attempt=attempts, status=status, exit_code=code, exit_reason=reason))
    first, second = decide_pr_review(s), decide_pr_review(s)
    assert first == second
    to = target_state(first)
    if to is not None and to != state:
        check_transition(RunKind.PR_REVIEW, state, to)
