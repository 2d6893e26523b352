"""The review-run decision: exit codes are verdicts, vanished or timed-out agents are failed attempts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optio.domain.actions import Noop, StartAgent, Transition, target_state
from optio.domain.reconcile.review import decide_pr_review, verdict_for_exit
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


@pytest.mark.parametrize(("code", "verdict"), [(0, "approve"), (1, "request_changes"), (42, "request_changes")])
def test_exit_code_is_the_verdict(code: int, verdict: str) -> None:
    action = decide_pr_review(snap(proc=ProcessView(attempt=1, status=ProcessStatus.EXITED, exit_code=code,
                                                    exit_reason="exited")))
    assert isinstance(action, Transition)
    assert action.to == "completed" and action.patch["verdict"] == verdict
    assert verdict_for_exit(code) == verdict


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
