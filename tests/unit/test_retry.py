"""The one retry rule: every error kind x attempts x max_retries, and job, repo and review runs agree on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optio.domain.actions import Transition
from optio.domain.agent_errors import (
    ERROR_KINDS,
    RATE_LIMIT_EXTRA_ATTEMPTS,
    ErrorKind,
    describe_error,
    policy_for,
)
from optio.domain.backoff import backoff_seconds
from optio.domain.reconcile.job import decide_job_run
from optio.domain.reconcile.repo import decide_repo_task
from optio.domain.reconcile.review import decide_pr_review
from optio.domain.repo_snapshot import RepoTaskSnapshot, RepoView
from optio.domain.retry import Failure, classified_failure, decide_retry, process_failure
from optio.domain.snapshot import Capacity, JobRunSnapshot, ProcessStatus, ProcessView, RunView
from optio.domain.states import RunKind

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FAIL_FAST = {"auth", "config", "model_not_found", "context_too_long", "budget", "timeout"}

kinds = st.sampled_from(ERROR_KINDS)
attempts = st.integers(min_value=1, max_value=20)
retries = st.integers(min_value=0, max_value=10)
seeds = st.integers(min_value=1, max_value=10**6)
retry_after = st.one_of(st.none(), st.floats(min_value=0, max_value=3600))


def test_the_policy_table_covers_config_and_fails_fast_exactly_where_it_says() -> None:
    """`config` (an agent that could not be configured) is a real kind now, and one table decides."""
    assert "config" in ERROR_KINDS
    assert {k for k in ERROR_KINDS if not policy_for(k).retry} == FAIL_FAST
    assert {k for k in ERROR_KINDS if policy_for(k).extra_attempts} == {"rate_limited"}
    assert policy_for("rate_limited").extra_attempts == RATE_LIMIT_EXTRA_ATTEMPTS


@given(kind=kinds, attempt=attempts, max_retries=retries, seed=seeds, after=retry_after)
def test_every_kind_attempt_and_budget(kind: ErrorKind, attempt: int, max_retries: int, seed: int,
                                       after: float | None) -> None:
    failure = classified_failure("agent exited with code 1", kind, "the message", after)
    decision = decide_retry(failure, attempt=attempt, max_retries=max_retries, seed=seed)
    assert decision.why == failure.why
    assert decision.reason.startswith(f"attempt {attempt} failed: {failure.why}; ")
    if kind in FAIL_FAST:
        assert decision.outcome == "fail_fast" and decision.reason.endswith("; not retried")
        assert failure.why == f"{kind}: the message"
        return
    budget = max_retries + (RATE_LIMIT_EXTRA_ATTEMPTS if kind == "rate_limited" else 0)
    if attempt > budget:
        assert decision.outcome == "give_up"
        assert decision.reason.endswith(f"; no retries left (max {max_retries})")
        return
    assert decision.outcome == "retry"
    backoff = backoff_seconds(attempt, seed=seed)
    if kind == "rate_limited":
        assert decision.delay_s == max(backoff, after or 0.0)
        assert failure.why == "rate limited: the message"
    else:
        assert decision.delay_s == backoff  # only a rate limit carries the vendor's retry-after
        assert failure.why == f"agent exited with code 1 ({kind}: the message)"
    assert decision.reason.endswith(f"; retrying in {decision.delay_s:.1f}s")


@given(kind=kinds)
def test_the_decision_and_the_adapters_read_the_same_table(kind: ErrorKind) -> None:
    """What an adapter marks retryable is exactly what the decision retries (first attempt, budget left)."""
    error = describe_error(kind, "detail")
    decision = decide_retry(classified_failure("why", kind, error.message), attempt=1, max_retries=3, seed=1)
    assert error.retryable == (decision.outcome == "retry")


@given(attempt=attempts, max_retries=retries, seed=seeds)
def test_an_unclassified_failure_retries_like_an_unknown_one(attempt: int, max_retries: int, seed: int) -> None:
    plain = decide_retry(Failure("agent process died"), attempt=attempt, max_retries=max_retries, seed=seed)
    unknown = decide_retry(Failure("agent process died", kind="unknown"), attempt=attempt, max_retries=max_retries,
                           seed=seed)
    assert (plain.outcome, plain.delay_s) == (unknown.outcome, unknown.delay_s)
    assert plain.outcome == ("retry" if attempt <= max_retries else "give_up")


def test_a_stored_kind_this_version_does_not_know_counts_as_unknown() -> None:
    failure = classified_failure("agent exited with code 3", "quantum_flux", "odd")
    assert failure.kind == "unknown" and failure.why == "agent exited with code 3 (quantum_flux: odd)"
    assert decide_retry(failure, attempt=1, max_retries=1, seed=1).outcome == "retry"


def test_a_process_without_a_classification_keeps_the_default_wording() -> None:
    proc = ProcessView(attempt=1, status=ProcessStatus.EXITED, exit_code=1, exit_reason="exited")
    assert process_failure(proc, "agent exited with code 1") == Failure("agent exited with code 1")
    assert process_failure(None, "never started") == Failure("never started")


# --- job runs, repo tasks and reviews agree --------------------------------------------------------------


def _run(kind: RunKind, attempts: int) -> RunView:
    return RunView(id=11, kind=kind, state="running", version=1, attempts=attempts)


def _job(proc: ProcessView, attempts: int, max_retries: int) -> JobRunSnapshot:
    return JobRunSnapshot(now=NOW, run=_run(RunKind.JOB_RUN, attempts), max_retries=max_retries, process=proc,
                          capacity=Capacity())


def _review(proc: ProcessView, attempts: int, max_retries: int) -> JobRunSnapshot:
    return JobRunSnapshot(now=NOW, run=_run(RunKind.PR_REVIEW, attempts), max_retries=max_retries, process=proc,
                          capacity=Capacity())


def _task(proc: ProcessView, attempts: int, max_retries: int) -> RepoTaskSnapshot:
    return RepoTaskSnapshot(now=NOW, run=_run(RunKind.REPO_TASK, attempts), repo=RepoView(), title="t",
                            prompt="p", base_branch="main", max_retries=max_retries, max_auto_resumes=3,
                            process=proc, capacity=Capacity())


def _outcome(action: object) -> tuple[str, str, str, object]:
    assert isinstance(action, Transition)
    return action.to, action.reason, action.patch["error"], action.patch.get("reconcile_backoff_until")


# A spawn failure is the one failed process all three kinds classify: a review's non-zero exit is a verdict.
failed_processes = st.builds(
    lambda kind, after, how, attempt: ProcessView(
        attempt=attempt, status=ProcessStatus.EXITED if how != "gone" else ProcessStatus.GONE,
        exit_code=None if how != "exited" else 1, exit_reason=None if how == "gone" else how,
        error="it broke", failure_kind=kind, retry_after_s=after,
    ),
    st.one_of(st.none(), kinds), retry_after, st.sampled_from(["spawn_failed", "timeout", "gone"]),
    st.integers(min_value=1, max_value=12),
)


@given(proc=failed_processes, max_retries=retries)
def test_job_repo_and_review_runs_decide_a_failed_attempt_alike(proc: ProcessView, max_retries: int) -> None:
    job = _outcome(decide_job_run(_job(proc, proc.attempt, max_retries)))
    review = _outcome(decide_pr_review(_review(proc, proc.attempt, max_retries)))
    task = _outcome(decide_repo_task(_task(proc, proc.attempt, max_retries)))
    assert job == review == task
    to, _, _, until = job
    assert to in ("queued", "failed")
    assert (until is not None) == (to == "queued")
    if until is not None:
        assert isinstance(until, datetime) and until - NOW >= timedelta(seconds=backoff_seconds(proc.attempt,
                                                                                                 seed=11) - 1e-3)


@pytest.mark.parametrize("kind", ["auth", "config", "budget", "timeout"])
def test_a_fail_fast_kind_fails_a_job_and_a_task_on_the_first_attempt(kind: str) -> None:
    proc = ProcessView(attempt=1, status=ProcessStatus.EXITED, exit_code=1, exit_reason="exited",
                       error="bad", failure_kind=kind)
    for action in (decide_job_run(_job(proc, 1, 5)), decide_repo_task(_task(proc, 1, 5))):
        assert isinstance(action, Transition) and action.to == "failed"
        assert action.reason.endswith("not retried") and action.patch["error"] == f"{kind}: bad"


def test_optio_s_own_timeout_is_unclassified_and_retried() -> None:
    """The run hit Optio's deadline (not an agent-reported timeout): it is retried while retries remain."""
    proc = ProcessView(attempt=1, status=ProcessStatus.EXITED, exit_code=None, exit_reason="timeout")
    action = decide_job_run(_job(proc, 1, 1))
    assert isinstance(action, Transition) and action.to == "queued" and "agent timed out" in action.reason
