"""The pure rules for runs whose decisions keep failing to apply: back off, then give up; never retry for ever."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from optio.domain.actions import Noop, Provision, Transition, target_state
from optio.domain.executor_errors import decide_executor_error, retry_delay_s, same_failure
from optio.domain.reconcile.job import decide_job_run
from optio.domain.reconcile.repo import decide_repo_task
from optio.domain.reconcile.review import decide_pr_review
from optio.domain.repo_snapshot import RepoTaskSnapshot, RepoView
from optio.domain.snapshot import Capacity, ExecutorErrorPolicy, JobRunSnapshot, ProcessStatus, ProcessView, RunView
from optio.domain.states import RepoTaskState, RunKind, can_transition

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = ExecutorErrorPolicy(max_errors=3, backoff_base_s=1.0, backoff_cap_s=60.0)


def run(state: str, count: int, *, kind: RunKind = RunKind.REPO_TASK, ago_s: float = 0.0,
        action: str = "open_pr", error: str = "ValueError: embedded null byte", intent: str | None = None) -> RunView:
    return RunView(id=7, kind=kind, state=state, version=3, attempts=1, control_intent=intent,
                   executor_error_action=action if count else None, executor_error=error if count else None,
                   executor_error_count=count, executor_error_at=NOW - timedelta(seconds=ago_s) if count else None)


def repo_snap(view: RunView, policy: ExecutorErrorPolicy = POLICY, **kw: object) -> RepoTaskSnapshot:
    return RepoTaskSnapshot(now=NOW, run=view, title="t", prompt="p", base_branch="main", repo=RepoView(),
                            max_retries=1, max_auto_resumes=5, executor_errors=policy, **kw)  # type: ignore[arg-type]


def job_snap(view: RunView) -> JobRunSnapshot:
    proc = ProcessView(attempt=1, status=ProcessStatus.EXITED, exit_code=0, exit_reason="exited")
    return JobRunSnapshot(now=NOW, run=view, max_retries=1, process=proc, capacity=Capacity(),
                          executor_errors=POLICY)


def test_same_failure_ignores_paths_numbers_and_shas() -> None:
    a = "GitError: git worktree add /data/worktrees/task-3 failed (exit 128): fatal: invalid reference: rel"
    b = "GitError: git worktree add /data/worktrees/task-3-x1 failed (exit 129): fatal: invalid reference: rel"
    assert same_failure("provision", a, "provision", b)
    assert not same_failure("open_pr", a, "provision", b)
    assert not same_failure("provision", a, "provision", "GitError: remote hung up")
    assert not same_failure(None, None, "provision", a)


def test_repo_task_gives_up_to_needs_attention_with_the_error() -> None:
    action = decide_repo_task(repo_snap(run("running", 3, ago_s=0.1)))
    assert isinstance(action, Transition) and action.to == RepoTaskState.NEEDS_ATTENTION
    assert "embedded null byte" in action.patch["error"] and "3 times" in action.patch["error"]
    assert action.patch["executor_error_count"] == 0


def test_repo_task_backs_off_in_place_then_retries_the_action() -> None:
    waiting = decide_repo_task(repo_snap(run("running", 1, ago_s=0.1)))
    assert isinstance(waiting, Noop) and waiting.recheck_after_s is not None and waiting.recheck_after_s > 0
    delay = retry_delay_s(run("running", 1), POLICY)
    done = decide_repo_task(repo_snap(run("running", 1, ago_s=delay + 0.01),
                                      process=ProcessView(attempt=1, status=ProcessStatus.EXITED, exit_code=0,
                                                          exit_reason="exited")))
    assert done.name == "open_pr"


def test_provisioning_failure_waits_in_the_queue_not_in_a_slot() -> None:
    action = decide_repo_task(repo_snap(run("provisioning", 2, action="provision", ago_s=0.0)))
    assert isinstance(action, Transition) and action.to == RepoTaskState.QUEUED
    until = action.patch["reconcile_backoff_until"]
    assert until > NOW
    # Back in the queue: it waits out the backoff, then provisions again.
    queued = run("queued", 2, action="provision")
    assert isinstance(decide_repo_task(repo_snap(replace(queued, reconcile_backoff_until=until))), Noop)
    later = replace(queued, executor_error_at=NOW - timedelta(seconds=120))
    assert isinstance(decide_repo_task(repo_snap(later)), Provision)


def test_cancel_wins_over_backoff() -> None:
    action = decide_repo_task(repo_snap(run("running", 1, intent="cancel")))
    assert isinstance(action, Transition) and action.to == RepoTaskState.CANCELLED


def test_job_and_review_give_up_to_failed() -> None:
    job = decide_job_run(job_snap(run("running", 3, kind=RunKind.JOB_RUN, action="transition")))
    assert isinstance(job, Transition) and job.to == "failed" and "embedded null byte" in job.patch["error"]
    review = decide_pr_review(job_snap(run("running", 3, kind=RunKind.PR_REVIEW, action="transition")))
    assert isinstance(review, Transition) and review.to == "failed"


@settings(max_examples=300, deadline=None)
@given(
    state=st.sampled_from(["queued", "provisioning", "running", "pr_opened"]),
    count=st.integers(min_value=1, max_value=50),
    max_errors=st.integers(min_value=1, max_value=10),
    ago_s=st.floats(min_value=0, max_value=10_000),
)
def test_executor_errors_never_retry_past_the_bound(state: str, count: int, max_errors: int, ago_s: float) -> None:
    """Whatever the state and timing: at the bound the run leaves for a state a person sees, legally."""
    policy = ExecutorErrorPolicy(max_errors=max_errors, backoff_base_s=0.5, backoff_cap_s=30.0)
    view = run(state, count, ago_s=ago_s)
    give_up = RepoTaskState.NEEDS_ATTENTION
    action = decide_executor_error(view, policy, NOW, give_up_to=give_up, requeue_from=frozenset({"provisioning"}))
    if count >= max_errors:
        assert isinstance(action, Transition) and action.to == give_up
        return
    if ago_s >= retry_delay_s(view, policy):
        assert action is None
    elif state == "provisioning":
        assert isinstance(action, Transition) and action.to == "queued"
        assert can_transition(RunKind.REPO_TASK, state, "queued")
    else:
        assert isinstance(action, Noop)
    whole = decide_repo_task(repo_snap(view, policy))
    to = target_state(whole)
    assert to is None or to == state or can_transition(RunKind.REPO_TASK, state, to)
