from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optio.domain.actions import (
    Action,
    ClearControlIntent,
    DeferWithBackoff,
    LaunchReview,
    MergePullRequest,
    Noop,
    OpenPullRequest,
    Provision,
    StartAgent,
    Transition,
    target_state,
)
from optio.domain.backoff import backoff_seconds
from optio.domain.reconcile.repo import (
    CAPACITY_BACKSTOP_S,
    CAPACITY_RECHECK_S,
    PROVISION_TIMEOUT,
    WATCH_RECHECK_S,
    decide_repo_task,
)
from optio.domain.repo_snapshot import (
    DependencyView,
    PullRequestView,
    RepoTaskSnapshot,
    RepoView,
    ReviewRunView,
)
from optio.domain.snapshot import Capacity, ProcessStatus, ProcessView, RunView
from optio.domain.states import RepoTaskState, RunKind, check_transition

S = RepoTaskState
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HEAD = "a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0"
OLD_HEAD = "0" * 40


def run(state: str = "running", **kw: object) -> RunView:
    fields: dict[str, object] = {"id": 11, "kind": RunKind.REPO_TASK, "state": state, "version": 5}
    fields["attempts"] = 1
    fields.update(kw)
    return RunView(**fields)  # type: ignore[arg-type]


def proc(status: ProcessStatus = ProcessStatus.ALIVE, **kw: object) -> ProcessView:
    fields: dict[str, object] = {"attempt": 1, "status": status, "started_at": NOW - timedelta(seconds=60)}
    fields.update(kw)
    return ProcessView(**fields)  # type: ignore[arg-type]


def pr(**kw: object) -> PullRequestView:
    fields: dict[str, object] = {"number": 42, "state": "open", "head_sha": HEAD, "mergeable": True}
    fields["ci_status"] = "passing"
    fields.update(kw)
    return PullRequestView(**fields)  # type: ignore[arg-type]


def snap(r: RunView | None = None, **kw: object) -> RepoTaskSnapshot:
    fields: dict[str, object] = {
        "now": NOW,
        "run": r or run(),
        "title": "Add a health endpoint",
        "prompt": "Add GET /healthz.",
        "base_branch": "main",
        "repo": RepoView(require_approval=True, auto_merge=True, has_review_agent=False),
        "max_retries": 2,
        "max_auto_resumes": 3,
    }
    fields.update(kw)
    return RepoTaskSnapshot(**fields)  # type: ignore[arg-type]


def decide(r: RunView | None = None, **kw: object) -> Action:
    s = snap(r, **kw)
    action = decide_repo_task(s)
    _assert_allowed(s, action)
    return action


def _assert_allowed(s: RepoTaskSnapshot, action: Action) -> None:
    to = target_state(action)
    if to is not None and to != s.run.state:
        check_transition(RunKind.REPO_TASK, s.run.state, to)


def _transition(action: Action, to: str) -> Transition:
    assert isinstance(action, Transition), action
    assert action.to == to, action
    return action


# --- 1. read errors, 2. backoff guard --------------------------------------------------------------------


def test_read_error_defers_and_counts_an_attempt() -> None:
    action = decide(run("pr_opened", control_intent="cancel"), read_error="forge timed out")
    assert isinstance(action, DeferWithBackoff)
    assert action.count_attempt is True
    assert "forge timed out" in action.reason
    assert action.delay_s > 0


def test_backoff_guard_rechecks_when_the_backoff_ends() -> None:
    r = run("queued", control_intent="cancel", reconcile_backoff_until=NOW + timedelta(seconds=90))
    action = decide(r)
    assert isinstance(action, Noop)
    assert action.recheck_after_s == pytest.approx(90)


def test_a_past_backoff_is_ignored() -> None:
    assert isinstance(decide(run("queued", reconcile_backoff_until=NOW - timedelta(seconds=1))), Provision)


# --- 3. control intents ------------------------------------------------------------------------------------

NON_TERMINAL = [s for s in S if s not in (S.COMPLETED, S.FAILED, S.CANCELLED)]


@pytest.mark.parametrize("state", NON_TERMINAL)
def test_cancel_from_any_live_state(state: str) -> None:
    action = _transition(decide(run(state, control_intent="cancel")), S.CANCELLED)
    assert action.clear_intent is True
    assert action.kill_process is (state == S.RUNNING)


@pytest.mark.parametrize("status", [ProcessStatus.STARTING, ProcessStatus.ALIVE])
def test_cancel_kills_a_live_process_even_outside_running(status: ProcessStatus) -> None:
    action = _transition(decide(run("pr_opened", control_intent="cancel"), process=proc(status)), S.CANCELLED)
    assert action.kill_process is True


def test_cancel_leaves_an_exited_process_alone() -> None:
    p = proc(ProcessStatus.EXITED, exit_code=0)
    action = _transition(decide(run("pr_opened", control_intent="cancel"), process=p), S.CANCELLED)
    assert action.kill_process is False


@pytest.mark.parametrize("state", [S.COMPLETED, S.FAILED, S.CANCELLED])
def test_cancel_of_a_finished_task_is_cleared(state: str) -> None:
    action = decide(run(state, control_intent="cancel"))
    assert isinstance(action, ClearControlIntent)
    assert "cancel" in action.reason


@pytest.mark.parametrize("state", [S.FAILED, S.CANCELLED, S.NEEDS_ATTENTION])
def test_retry_requeues_with_counters_reset(state: str) -> None:
    r = run(state, control_intent="retry", attempts=3, error="boom")
    action = _transition(decide(r, resume_count=2, resume_keys=frozenset({"ci_failed:x"})), S.QUEUED)
    assert action.clear_intent is True
    assert action.patch["attempts"] == 0
    assert action.patch["resume_count"] == 0
    assert action.patch["resume_keys"] == ()
    assert action.patch["error"] is None


@pytest.mark.parametrize("state", [S.FAILED, S.CANCELLED])
def test_retry_of_a_finished_task_requeues_even_with_an_open_pr(state: str) -> None:
    _transition(decide(run(state, control_intent="retry"), pr=pr()), S.QUEUED)


def test_retry_from_needs_attention_with_an_open_pr_returns_to_the_pr_loop() -> None:
    r = run("needs_attention", control_intent="retry", attempts=4)
    action = _transition(decide(r, pr=pr(), resume_count=3), S.PR_OPENED)
    assert action.clear_intent is True
    assert action.patch["resume_count"] == 0
    assert action.patch["resume_keys"] == ()
    assert "attempts" not in action.patch, "attempts keeps numbering agent processes"


@pytest.mark.parametrize("pr_state", ["merged", "closed"])
def test_retry_from_needs_attention_without_an_open_pr_requeues(pr_state: str) -> None:
    _transition(decide(run("needs_attention", control_intent="retry"), pr=pr(state=pr_state)), S.QUEUED)


@pytest.mark.parametrize("state", [S.PENDING, S.QUEUED, S.PROVISIONING, S.RUNNING, S.PR_OPENED, S.COMPLETED])
def test_retry_that_does_not_apply_is_cleared(state: str) -> None:
    action = decide(run(state, control_intent="retry"), pr=pr())
    assert isinstance(action, ClearControlIntent)
    assert "retry ignored" in action.reason and state in action.reason


@pytest.mark.parametrize("state", [S.NEEDS_ATTENTION, S.PR_OPENED])
def test_resume_by_a_person_starts_the_agent_past_the_caps(state: str) -> None:
    r = run(state, control_intent="resume", attempts=2)
    action = decide(
        r, pr=pr(), resume_count=9, resume_keys=frozenset({f"ci_failed:{HEAD}"}), intent_note="try the v2 api"
    )
    assert isinstance(action, StartAgent)
    assert action.to == S.RUNNING
    assert action.clear_intent is True
    assert action.resume_reason == "manual"
    assert action.resume_key is None
    assert action.patch == {"attempts": 3, "human_resumes": 1}
    assert action.prompt is not None
    assert "resumed by a person" in action.prompt
    assert "try the v2 api" in action.prompt
    assert "Add GET /healthz." in action.prompt


@pytest.mark.parametrize("the_pr", [None, pr(state="merged"), pr(state="closed")], ids=["none", "merged", "closed"])
def test_resume_without_an_open_pr_is_cleared(the_pr: PullRequestView | None) -> None:
    action = decide(run("needs_attention", control_intent="resume"), pr=the_pr)
    assert isinstance(action, ClearControlIntent)
    assert "no open pull request" in action.reason


@pytest.mark.parametrize("state", [S.QUEUED, S.RUNNING, S.FAILED])
def test_resume_in_other_states_is_cleared(state: str) -> None:
    action = decide(run(state, control_intent="resume"), pr=pr())
    assert isinstance(action, ClearControlIntent)
    assert "resume ignored" in action.reason


def test_unknown_intent_is_cleared() -> None:
    action = decide(run("running", control_intent="dance"), process=proc())
    assert isinstance(action, ClearControlIntent)
    assert "dance" in action.reason


# --- 4a. pending / waiting_on_deps -----------------------------------------------------------------------


@pytest.mark.parametrize("state", [S.PENDING, S.WAITING_ON_DEPS])
def test_no_dependencies_queues(state: str) -> None:
    _transition(decide(run(state)), S.QUEUED)


@pytest.mark.parametrize("state", [S.PENDING, S.WAITING_ON_DEPS])
def test_all_dependencies_completed_queues(state: str) -> None:
    deps = (DependencyView(1, "completed"), DependencyView(2, "completed"))
    _transition(decide(run(state), dependencies=deps), S.QUEUED)


@pytest.mark.parametrize("state", [S.PENDING, S.WAITING_ON_DEPS])
def test_a_failed_dependency_fails_the_task(state: str) -> None:
    deps = (DependencyView(5, "running"), DependencyView(3, "failed"), DependencyView(4, "completed"))
    action = _transition(decide(run(state), dependencies=deps), S.FAILED)
    assert action.reason == "dependency #3 failed"
    assert action.patch["error"] == "dependency #3 failed"


def test_a_cancelled_dependency_fails_the_task() -> None:
    action = _transition(decide(run("pending"), dependencies=(DependencyView(8, "cancelled"),)), S.FAILED)
    assert "dependency #8" in action.reason and "cancelled" in action.reason


def test_pending_with_open_dependencies_starts_waiting() -> None:
    deps = (DependencyView(2, "running"), DependencyView(1, "completed"), DependencyView(3, "pr_opened"))
    action = _transition(decide(run("pending"), dependencies=deps), S.WAITING_ON_DEPS)
    assert "#2, #3" in action.reason


@given(state=st.sampled_from(["pending", "waiting_on_deps"]), in_repo=st.integers(0, 12), ahead=st.integers(0, 40),
       cap=st.integers(1, 8))
def test_a_task_joining_the_queue_far_back_puts_off_its_first_look_there(state: str, in_repo: int, ahead: int,
                                                                        cap: int) -> None:
    """Its first look in the queue would only find the tasks ahead taking every slot; it is woken when its turn
    comes, so the look waits for the backstop. A task next in line looks at once."""
    capacity = Capacity(running_scope=in_repo + ahead, max_scope=cap, ahead=ahead)
    action = _transition(decide(run(state), capacity=capacity, dependencies=(DependencyView(1, "completed"),)),
                         S.QUEUED)
    assert action.recheck_after_s == (CAPACITY_BACKSTOP_S if ahead >= cap else 0.0)


@given(stall=st.floats(1, 3600), resume=st.booleans())
def test_a_started_agent_is_looked_at_next_within_the_watch_interval_or_the_stall_threshold(
        stall: float, resume: bool) -> None:
    """The agent's exit wakes the task; the first look after the start would only find it running."""
    if resume:
        action = decide(run("pr_opened", attempts=2), stall_threshold_s=stall,
                        pr=pr(ci_status="failing", ci_output_tail="FAILED test_x\n"))
    else:
        action = decide(run("provisioning", attempts=0), stall_threshold_s=stall, worktree_ready=True)
    assert isinstance(action, StartAgent), action
    assert action.recheck_after_s == min(WATCH_RECHECK_S, stall + 1)


def test_waiting_on_deps_keeps_waiting() -> None:
    action = decide(run("waiting_on_deps"), dependencies=(DependencyView(2, "needs_attention"),))
    assert isinstance(action, Noop)
    assert action.recheck_after_s and action.recheck_after_s > 0


# --- 4b. queued ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "capacity",
    [Capacity(running_global=2, max_global=2), Capacity(running_scope=1, max_scope=1)],
    ids=["global", "per-repo"],
)
def test_queued_waits_for_capacity(capacity: Capacity) -> None:
    action = decide(run("queued"), capacity=capacity)
    assert isinstance(action, Noop)
    assert action.recheck_after_s == CAPACITY_RECHECK_S


@given(in_repo=st.integers(0, 12), ahead=st.integers(0, 40), cap=st.integers(1, 8))
def test_only_the_tasks_next_in_line_look_often_for_a_slot(in_repo: int, ahead: int, cap: int) -> None:
    """A task with at least a repo's worth of tasks ahead cannot start before they do, and a freed slot wakes
    the next in line: it only needs the backstop look. The ones next in line keep looking often."""
    capacity = Capacity(running_scope=in_repo + ahead, max_scope=cap, ahead=ahead)
    action = decide(run("queued"), capacity=capacity)
    if in_repo + ahead < cap:
        assert isinstance(action, Provision)
    else:
        assert isinstance(action, Noop)
        assert action.recheck_after_s == (CAPACITY_BACKSTOP_S if ahead >= cap else CAPACITY_RECHECK_S)


def test_queued_provisions() -> None:
    action = decide(run("queued"), capacity=Capacity(running_global=1, max_global=2))
    assert isinstance(action, Provision)
    assert action.to == S.PROVISIONING


# --- 4c. provisioning ------------------------------------------------------------------------------------


def test_ready_worktree_starts_the_agent_with_the_original_prompt() -> None:
    action = decide(run("provisioning", attempts=1), worktree_ready=True)
    assert isinstance(action, StartAgent)
    assert action.to == S.RUNNING
    assert action.patch == {"attempts": 2}
    assert action.prompt is None
    assert action.resume_reason is None and action.resume_key is None


@pytest.mark.parametrize("since", [None, NOW - PROVISION_TIMEOUT, NOW - timedelta(seconds=5)])
def test_worktree_not_ready_is_provisioned_again_in_place(since: datetime | None) -> None:
    action = decide(run("provisioning"), worktree_ready=False, provisioning_since=since)
    assert isinstance(action, Provision)
    assert action.to == S.PROVISIONING
    assert action.reason == "re-provision"


def test_provisioning_timeout_uses_up_an_attempt_and_retries() -> None:
    r = run("provisioning", attempts=0)
    since = NOW - PROVISION_TIMEOUT - timedelta(seconds=1)
    action = _transition(decide(r, provisioning_since=since), S.QUEUED)
    assert action.patch["attempts"] == 1
    assert action.patch["reconcile_backoff_until"] > NOW
    assert "worktree not ready" in action.reason


def test_provisioning_timeout_fails_once_attempts_are_used_up() -> None:
    r = run("provisioning", attempts=2)
    action = _transition(decide(r, provisioning_since=NOW - timedelta(hours=1), max_retries=2), S.FAILED)
    assert action.patch["attempts"] == 3


def test_provisioning_timeout_with_a_pr_needs_attention() -> None:
    r = run("provisioning", attempts=0)
    _transition(decide(r, provisioning_since=NOW - timedelta(hours=1), pr=pr()), S.NEEDS_ATTENTION)


# --- 4d. running -----------------------------------------------------------------------------------------

FAILURES = [
    pytest.param(None, "never started", False, id="no-process"),
    pytest.param(proc(attempt=0), "never started", False, id="wrong-attempt"),
    pytest.param(proc(ProcessStatus.GONE), "died", False, id="gone"),
    pytest.param(proc(ProcessStatus.EXITED, exit_code=0, exit_reason="timeout"), "timed out", False, id="timeout"),
    pytest.param(
        proc(ProcessStatus.EXITED, exit_reason="spawn_failed", error="ENOENT"), "ENOENT", False, id="spawn-failed"
    ),
    pytest.param(proc(ProcessStatus.EXITED, exit_reason="spawn_failed"), "unknown error", False, id="spawn-no-err"),
    pytest.param(proc(ProcessStatus.EXITED, exit_code=2), "exited with code 2", False, id="non-zero"),
    pytest.param(proc(last_output_at=NOW - timedelta(hours=1)), "stalled", True, id="stalled"),
]


@pytest.mark.parametrize(("p", "why", "kill"), FAILURES)
def test_failed_attempt_with_retries_left_requeues_with_backoff(p: ProcessView | None, why: str, kill: bool) -> None:
    r = run("running", attempts=1)
    action = _transition(decide(r, process=p, max_retries=1), S.QUEUED)
    assert why in action.reason
    assert why in action.patch["error"]
    assert action.patch["reconcile_backoff_until"] == NOW + timedelta(seconds=backoff_seconds(1, seed=r.id))
    assert action.kill_process is kill
    assert action.event == "retry_scheduled"


@pytest.mark.parametrize(("p", "why", "kill"), FAILURES)
def test_failed_attempt_without_retries_left_fails(p: ProcessView | None, why: str, kill: bool) -> None:
    action = _transition(decide(run("running", attempts=1), process=p, max_retries=0), S.FAILED)
    assert why in action.reason and "no retries left" in action.reason
    assert action.kill_process is kill
    assert "reconcile_backoff_until" not in action.patch


@pytest.mark.parametrize(("p", "why", "kill"), FAILURES)
def test_failed_attempt_with_a_pr_needs_attention_instead(p: ProcessView | None, why: str, kill: bool) -> None:
    for max_retries in (0, 5):
        s = dict(process=p, max_retries=max_retries, pr=pr())
        action = _transition(decide(run("running", attempts=1), **s), S.NEEDS_ATTENTION)
        assert why in action.reason and "#42" in action.reason
        assert action.kill_process is kill


def test_exit_zero_opens_the_pull_request() -> None:
    action = decide(run("running"), process=proc(ProcessStatus.EXITED, exit_code=0, exit_reason="exited"))
    assert isinstance(action, OpenPullRequest)
    assert action.to == S.PR_OPENED


def test_exit_zero_after_a_resume_updates_the_pull_request() -> None:
    action = decide(run("running", attempts=3), process=proc(ProcessStatus.EXITED, attempt=3, exit_code=0), pr=pr())
    assert isinstance(action, OpenPullRequest)


def test_live_agent_is_watched() -> None:
    action = decide(run("running"), process=proc(last_output_at=NOW - timedelta(seconds=10)))
    assert isinstance(action, Noop)
    assert action.recheck_after_s == WATCH_RECHECK_S


def test_live_agent_near_the_stall_threshold_is_rechecked_right_after_it() -> None:
    action = decide(run("running"), process=proc(last_output_at=NOW - timedelta(seconds=95)), stall_threshold_s=100)
    assert isinstance(action, Noop)
    assert action.recheck_after_s == pytest.approx(6)


@pytest.mark.parametrize("p", [proc(ProcessStatus.STARTING), proc(started_at=None)], ids=["starting", "no-times"])
def test_starting_agent_is_watched(p: ProcessView) -> None:
    action = decide(run("running"), process=p)
    assert isinstance(action, Noop)
    assert "starting" in action.reason


# --- 4e. pr_opened -------------------------------------------------------------------------------------


def pr_task(**kw: object) -> Action:
    kw.setdefault("pr", pr())
    return decide(run("pr_opened", attempts=2), **kw)


def test_pr_opened_without_a_pr_defers() -> None:
    action = decide(run("pr_opened"), pr=None)
    assert isinstance(action, DeferWithBackoff)
    assert action.count_attempt is True


def test_merged_pr_completes() -> None:
    _transition(pr_task(pr=pr(state="merged", ci_status="failing")), S.COMPLETED)


def test_a_pr_merged_elsewhere_completes_with_a_merged_event() -> None:
    # By a person (`optio pr merge`) or with a merge-queue batch: the timeline says merged, as for the loop's own.
    assert _transition(pr_task(pr=pr(state="merged")), S.COMPLETED).event == "merged"


def test_closed_pr_fails() -> None:
    action = _transition(pr_task(pr=pr(state="closed")), S.FAILED)
    assert "pull request closed" in action.reason
    assert action.patch["error"] == "pull request closed"


def test_conflict_resumes_the_agent_to_rebase() -> None:
    the_pr = pr(mergeable=False, conflicting_files=("src/app.py",), ci_status="failing")
    action = pr_task(pr=the_pr, base_branch="develop")
    assert isinstance(action, StartAgent)
    assert action.to == S.RUNNING
    assert action.resume_reason == "conflict" and action.event == "conflict"
    assert action.resume_key == f"conflict:{HEAD}"
    assert action.patch == {"attempts": 3}
    assert action.prompt is not None
    assert "- src/app.py" in action.prompt
    assert "git rebase origin/develop" in action.prompt
    assert "merge conflicts" in action.reason


def test_failing_ci_resumes_the_agent_with_the_output_tail() -> None:
    action = pr_task(pr=pr(ci_status="failing", ci_output_tail="FAILED test_x\nEXPECTED ok\n"))
    assert isinstance(action, StartAgent)
    assert action.resume_reason == "ci_failed" and action.event == "ci_failed"
    assert action.resume_key == f"ci_failed:{HEAD}"
    assert action.prompt is not None and "FAILED test_x\nEXPECTED ok" in action.prompt
    assert "CI failed" in action.reason


def test_failing_ci_comes_before_requested_changes() -> None:
    the_pr = pr(ci_status="failing", review_status="changes_requested", review_id=7)
    action = pr_task(pr=the_pr)
    assert isinstance(action, StartAgent) and action.resume_reason == "ci_failed"


def test_requested_changes_resume_the_agent_with_the_comments() -> None:
    comments = ("Rename `foo`.\nPlease.", "Add a test for 404.")
    the_pr = pr(review_status="changes_requested", review_id=77, review_comments=comments, review_head_sha=HEAD)
    action = pr_task(pr=the_pr)
    assert isinstance(action, StartAgent)
    assert action.resume_reason == "changes_requested" and action.event == "changes_requested"
    assert action.resume_key == "changes_requested:77"
    assert action.prompt is not None
    assert all(c in action.prompt for c in comments)


def test_requested_changes_without_a_review_id_are_keyed_by_the_reviewed_head() -> None:
    the_pr = pr(review_status="changes_requested", review_head_sha=OLD_HEAD)
    action = pr_task(pr=the_pr)
    assert isinstance(action, StartAgent)
    assert action.resume_key == f"changes_requested:{OLD_HEAD}"


def test_requested_changes_answered_with_new_commits_wait_for_a_new_review() -> None:
    the_pr = pr(review_status="changes_requested", review_id=77, review_head_sha=OLD_HEAD)
    action = pr_task(pr=the_pr, resume_keys=frozenset({"changes_requested:77"}), resume_count=1)
    assert isinstance(action, Noop)
    assert "new review" in action.reason


def test_requested_changes_answered_with_new_commits_still_wait_for_ci() -> None:
    the_pr = pr(review_status="changes_requested", review_id=77, review_head_sha=OLD_HEAD, ci_status="pending")
    action = pr_task(pr=the_pr, resume_keys=frozenset({"changes_requested:77"}))
    assert isinstance(action, Noop) and "CI" in action.reason


def test_requested_changes_answered_with_new_commits_get_the_review_agent() -> None:
    the_pr = pr(review_status="changes_requested", review_id=77, review_head_sha=OLD_HEAD)
    repo = RepoView(require_approval=False, auto_merge=True, has_review_agent=True)
    action = pr_task(pr=the_pr, repo=repo, resume_keys=frozenset({"changes_requested:77"}))
    assert isinstance(action, LaunchReview) and action.head_sha == HEAD


def test_requested_changes_never_merge_even_without_required_approval() -> None:
    the_pr = pr(review_status="changes_requested", review_id=77, review_head_sha=OLD_HEAD)
    repo = RepoView(require_approval=False, auto_merge=True, has_review_agent=True)
    review = ReviewRunView(id=1, state="completed", head_sha=HEAD, verdict="approve")
    action = pr_task(pr=the_pr, repo=repo, review_run=review, resume_keys=frozenset({"changes_requested:77"}))
    assert isinstance(action, Noop)


def test_pending_ci_waits() -> None:
    action = pr_task(pr=pr(ci_status="pending", review_status="approved"))
    assert isinstance(action, Noop)
    assert "waiting for CI" in action.reason


# review agent


def _with_agent(**kw: object) -> Action:
    repo = RepoView(require_approval=True, auto_merge=True, has_review_agent=True)
    kw.setdefault("pr", pr(review_status="approved"))
    return pr_task(repo=repo, **kw)


@pytest.mark.parametrize("ci", ["passing", None])
def test_review_agent_is_launched_for_an_unreviewed_head(ci: str | None) -> None:
    action = _with_agent(pr=pr(ci_status=ci))
    assert isinstance(action, LaunchReview)
    assert action.head_sha == HEAD


def test_review_agent_is_launched_again_for_a_new_head() -> None:
    old = ReviewRunView(id=3, state="completed", head_sha=OLD_HEAD, verdict="approve")
    action = _with_agent(review_run=old)
    assert isinstance(action, LaunchReview) and action.head_sha == HEAD


@pytest.mark.parametrize("state", ["queued", "running"])
def test_review_agent_in_progress_is_awaited(state: str) -> None:
    action = _with_agent(review_run=ReviewRunView(id=3, state=state, head_sha=HEAD))
    assert isinstance(action, Noop)
    assert "review agent" in action.reason


@pytest.mark.parametrize(
    "review",
    [
        ReviewRunView(id=3, state="failed", head_sha=HEAD),
        ReviewRunView(id=3, state="cancelled", head_sha=HEAD),
        ReviewRunView(id=3, state="completed", head_sha=HEAD, verdict=None),
    ],
    ids=["failed", "cancelled", "no-verdict"],
)
def test_review_agent_without_a_verdict_needs_a_person(review: ReviewRunView) -> None:
    action = _transition(_with_agent(review_run=review), S.NEEDS_ATTENTION)
    assert "review agent" in action.reason


def test_review_agent_rejection_not_yet_on_the_pr_blocks_the_merge() -> None:
    review = ReviewRunView(id=3, state="completed", head_sha=HEAD, verdict="request_changes")
    action = _with_agent(review_run=review)
    assert isinstance(action, Noop)


def test_review_agent_approval_lets_an_approved_pr_merge() -> None:
    review = ReviewRunView(id=3, state="completed", head_sha=HEAD, verdict="approve")
    action = _with_agent(review_run=review)
    assert isinstance(action, MergePullRequest) and action.head_sha == HEAD


# approval and merge


def test_approved_pr_with_auto_merge_is_merged() -> None:
    action = pr_task(pr=pr(review_status="approved"))
    assert isinstance(action, MergePullRequest)
    assert action.head_sha == HEAD
    assert action.to == S.COMPLETED


def test_pr_without_ci_can_merge() -> None:
    assert isinstance(pr_task(pr=pr(review_status="approved", ci_status=None)), MergePullRequest)


def test_approval_not_required_merges_without_a_review() -> None:
    repo = RepoView(require_approval=False, auto_merge=True)
    assert isinstance(pr_task(repo=repo), MergePullRequest)


def test_merge_waits_until_mergeability_is_known() -> None:
    action = pr_task(pr=pr(review_status="approved", mergeable=None))
    assert isinstance(action, Noop)
    assert "mergeab" in action.reason


@pytest.mark.parametrize("require_approval", [True, False])
def test_without_auto_merge_a_mergeable_pr_waits_for_a_person(require_approval: bool) -> None:
    repo = RepoView(require_approval=require_approval, auto_merge=False)
    action = pr_task(repo=repo, pr=pr(review_status="approved"))
    assert isinstance(action, Noop)
    assert action.reason == "waiting for a manual merge"


def test_an_approval_of_an_earlier_head_does_not_merge_the_new_one() -> None:
    action = pr_task(pr=pr(review_status="approved", review_head_sha="0" * 40))
    assert isinstance(action, Noop) and action.reason == "waiting for review"
    assert isinstance(pr_task(pr=pr(review_status="approved", review_head_sha=HEAD)), MergePullRequest)


def test_unapproved_pr_waits_for_review() -> None:
    action = pr_task(pr=pr(review_status=None))
    assert isinstance(action, Noop)
    assert action.reason == "waiting for review"


# the resume gate


@pytest.mark.parametrize(
    ("the_pr", "key"),
    [
        (pr(mergeable=False), f"conflict:{HEAD}"),
        (pr(ci_status="failing"), f"ci_failed:{HEAD}"),
        (pr(review_status="changes_requested", review_id=9, review_head_sha=HEAD), "changes_requested:9"),
        (pr(review_status="changes_requested", review_id=9), "changes_requested:9"),
    ],
    ids=["conflict", "ci", "review", "review-unknown-head"],
)
def test_the_same_failure_twice_needs_attention(the_pr: PullRequestView, key: str) -> None:
    action = _transition(pr_task(pr=the_pr, resume_keys=frozenset({key}), resume_count=1), S.NEEDS_ATTENTION)
    assert key in action.reason
    assert action.patch["error"] == action.reason


@pytest.mark.parametrize(
    "the_pr",
    [pr(mergeable=False), pr(ci_status="failing"), pr(review_status="changes_requested", review_id=9)],
    ids=["conflict", "ci", "review"],
)
def test_the_resume_cap_needs_attention(the_pr: PullRequestView) -> None:
    action = _transition(pr_task(pr=the_pr, resume_count=3, max_auto_resumes=3), S.NEEDS_ATTENTION)
    assert "cap of 3 automatic resumes" in action.reason


def test_changes_a_person_requested_do_not_count_toward_the_automatic_cap() -> None:
    the_pr = pr(review_status="changes_requested", review_id=9, review_head_sha=HEAD, review_by_person=True)
    action = pr_task(pr=the_pr, resume_count=3, max_auto_resumes=3, human_resumes=1,
                     resume_keys=frozenset({f"ci_failed:{OLD_HEAD}"}))
    assert isinstance(action, StartAgent) and action.to == S.RUNNING
    assert action.resume_reason == "changes_requested"
    assert action.resume_key is None  # the executor bumps resume_count only for a resume key
    assert action.patch["human_resumes"] == 2
    assert set(action.patch["resume_keys"]) == {f"ci_failed:{OLD_HEAD}", "changes_requested:9"}
    assert "requested by a person" in action.reason


def test_the_same_review_by_a_person_resumes_only_once() -> None:
    the_pr = pr(review_status="changes_requested", review_id=9, review_head_sha=HEAD, review_by_person=True)
    action = _transition(pr_task(pr=the_pr, resume_keys=frozenset({"changes_requested:9"})), S.NEEDS_ATTENTION)
    assert "changes_requested:9" in action.reason


def test_changes_the_review_agent_requested_still_count_toward_the_cap() -> None:
    the_pr = pr(review_status="changes_requested", review_id=9, review_head_sha=HEAD, review_by_person=False)
    _transition(pr_task(pr=the_pr, resume_count=3, max_auto_resumes=3), S.NEEDS_ATTENTION)


def test_a_new_head_gets_a_new_resume_for_the_same_kind_of_failure() -> None:
    action = pr_task(pr=pr(ci_status="failing"), resume_keys=frozenset({f"ci_failed:{OLD_HEAD}"}), resume_count=1)
    assert isinstance(action, StartAgent)
    assert "automatic resume 2 of 3" in action.reason


# --- 4f. states only intents move ----------------------------------------------------------------------


@pytest.mark.parametrize("state", [S.NEEDS_ATTENTION, S.COMPLETED, S.FAILED, S.CANCELLED])
def test_resting_states_do_nothing(state: str) -> None:
    action = decide(run(state), pr=pr(ci_status="failing"), process=proc(ProcessStatus.GONE))
    assert isinstance(action, Noop)
    assert action.recheck_after_s is None


def test_unknown_state_defers_loudly() -> None:
    action = decide(run("sleeping"))
    assert isinstance(action, DeferWithBackoff)
    assert action.count_attempt is True
    assert "sleeping" in action.reason


# --- properties ------------------------------------------------------------------------------------------

_times = st.one_of(st.none(), st.integers(-7200, 7200).map(lambda s: NOW + timedelta(seconds=s)))
_shas = st.sampled_from([HEAD, OLD_HEAD, "f" * 40])
_intents = st.one_of(st.none(), st.sampled_from(["cancel", "retry", "resume", "bogus"]))

_runs = st.builds(
    RunView,
    id=st.integers(1, 10_000),
    kind=st.just(RunKind.REPO_TASK),
    state=st.sampled_from([s.value for s in RepoTaskState]),
    version=st.integers(0, 50),
    control_intent=_intents,
    reconcile_backoff_until=_times,
    reconcile_attempts=st.integers(0, 20),
    attempts=st.integers(0, 6),
    heartbeat_at=_times,
    started_at=_times,
)

_processes = st.one_of(
    st.none(),
    st.builds(
        ProcessView,
        attempt=st.integers(0, 6),
        status=st.sampled_from(list(ProcessStatus)),
        exit_code=st.one_of(st.none(), st.integers(-9, 3)),
        exit_reason=st.one_of(st.none(), st.sampled_from(["exited", "timeout", "killed", "spawn_failed", "lost"])),
        started_at=_times,
        last_output_at=_times,
        error=st.one_of(st.none(), st.text(max_size=10)),
    ),
)

_prs = st.one_of(
    st.none(),
    st.builds(
        PullRequestView,
        number=st.integers(1, 500),
        state=st.sampled_from(["open", "open", "open", "merged", "closed"]),
        head_sha=_shas,
        base_sha=st.one_of(st.none(), _shas),
        mergeable=st.one_of(st.none(), st.booleans()),
        conflicting_files=st.lists(st.sampled_from(["a.py", "b/c.md"]), max_size=2).map(tuple),
        ci_status=st.sampled_from([None, "pending", "passing", "failing"]),
        ci_output_tail=st.text(max_size=40),
        review_status=st.sampled_from([None, "approved", "changes_requested"]),
        review_id=st.one_of(st.none(), st.integers(1, 4)),
        review_comments=st.lists(st.text(max_size=20), max_size=2).map(tuple),
        review_head_sha=st.one_of(st.none(), _shas),
        review_by_person=st.booleans(),
    ),
)

_review_runs = st.one_of(
    st.none(),
    st.builds(
        ReviewRunView,
        id=st.integers(1, 50),
        state=st.sampled_from(["queued", "running", "completed", "failed", "cancelled"]),
        head_sha=_shas,
        verdict=st.sampled_from([None, "approve", "request_changes"]),
    ),
)

_keys = st.frozensets(
    st.one_of(
        st.builds(lambda s: f"conflict:{s}", _shas),
        st.builds(lambda s: f"ci_failed:{s}", _shas),
        st.builds(lambda i: f"changes_requested:{i}", st.integers(1, 4)),
    ),
    max_size=4,
)

_snapshots = st.builds(
    RepoTaskSnapshot,
    now=st.just(NOW),
    run=_runs,
    title=st.just("Add a health endpoint"),
    prompt=st.text(max_size=30),
    base_branch=st.sampled_from(["main", "develop"]),
    repo=st.builds(
        RepoView,
        require_approval=st.booleans(),
        auto_merge=st.booleans(),
        has_review_agent=st.booleans(),
        max_concurrent=st.one_of(st.none(), st.integers(1, 4)),
    ),
    max_retries=st.integers(0, 3),
    max_auto_resumes=st.integers(0, 4),
    dependencies=st.lists(
        st.builds(DependencyView, id=st.integers(1, 9), state=st.sampled_from([s.value for s in RepoTaskState])),
        max_size=3,
    ).map(tuple),
    process=_processes,
    capacity=st.builds(
        Capacity,
        running_global=st.integers(0, 3),
        max_global=st.one_of(st.none(), st.integers(0, 3)),
        running_scope=st.integers(0, 3),
        max_scope=st.one_of(st.none(), st.integers(0, 3)),
    ),
    pr=_prs,
    review_run=_review_runs,
    worktree_ready=st.booleans(),
    resume_count=st.integers(0, 5),
    human_resumes=st.integers(0, 5),
    resume_keys=_keys,
    stall_threshold_s=st.floats(1, 3600),
    provisioning_since=_times,
    read_error=st.one_of(st.none(), st.none(), st.none(), st.just("boom")),
    intent_note=st.text(max_size=10),
)


@settings(max_examples=600)
@given(_snapshots)
def test_decision_is_deterministic_and_never_raises(s: RepoTaskSnapshot) -> None:
    assert decide_repo_task(s) == decide_repo_task(replace(s))


@settings(max_examples=1500)
@given(_snapshots)
def test_target_state_is_always_allowed_or_unchanged(s: RepoTaskSnapshot) -> None:
    _assert_allowed(s, decide_repo_task(s))


@settings(max_examples=1500)
@given(_snapshots)
def test_automatic_resumes_respect_the_keys_and_the_cap(s: RepoTaskSnapshot) -> None:
    action = decide_repo_task(s)
    if isinstance(action, StartAgent) and action.resume_reason not in (None, "manual"):
        assert s.pr is not None and s.pr.state == "open"
        if "lost before its agent started" in action.reason:  # the same resume again: nothing recorded twice
            assert s.run.state == "running" and action.resume_key is None
            assert dict(action.patch) == {"attempts": s.run.attempts + 1}
            return
        if "human_resumes" in action.patch:  # changes a person requested: keyed, counted apart, never capped
            assert action.resume_reason == "changes_requested" and s.pr.review_by_person
            assert action.resume_key is None and action.patch["human_resumes"] == s.human_resumes + 1
            new_keys = set(action.patch["resume_keys"]) - s.resume_keys
            assert len(new_keys) == 1 and next(iter(new_keys)).startswith("changes_requested:")
            return
        assert action.resume_key is not None
        assert action.resume_key not in s.resume_keys
        assert s.resume_count < s.max_auto_resumes


@settings(max_examples=600)
@given(_snapshots)
def test_every_agent_start_uses_a_fresh_attempt_number(s: RepoTaskSnapshot) -> None:
    action = decide_repo_task(s)
    if isinstance(action, StartAgent):
        assert action.patch["attempts"] == s.run.attempts + 1


@settings(max_examples=600)
@given(_snapshots)
def test_merges_only_an_open_mergeable_pr_with_no_known_problem(s: RepoTaskSnapshot) -> None:
    action = decide_repo_task(s)
    if isinstance(action, MergePullRequest):
        assert s.pr is not None
        assert s.pr.state == "open" and s.pr.mergeable is True
        assert s.pr.ci_status in (None, "passing")
        assert s.pr.review_status != "changes_requested"
        assert s.pr.review_status == "approved" or not s.repo.require_approval
        if s.repo.require_approval:
            assert s.pr.review_head_sha in (None, s.pr.head_sha)
        assert action.head_sha == s.pr.head_sha
        if s.repo.has_review_agent:
            assert s.review_run is not None and s.review_run.head_sha == s.pr.head_sha
            assert s.review_run.verdict == "approve"


# --- a resume lost before its agent started (the server stopped in between) --------------------------------


@pytest.mark.parametrize("p", [None, proc(attempt=1), proc(ProcessStatus.GONE, attempt=2, exit_reason="not_started")],
                         ids=["no-row", "old-attempt", "not-started"])
def test_a_resume_lost_before_its_agent_started_is_started_again(p: ProcessView | None) -> None:
    key = f"ci_failed:{HEAD}"
    action = decide(run("running", attempts=2), process=p, pr=pr(ci_status="failing"), resume_count=1,
                    resume_keys=frozenset({key}))
    assert isinstance(action, StartAgent), action
    assert action.resume_reason == "ci_failed" and "lost before its agent started" in action.reason
    assert action.resume_key is None and dict(action.patch) == {"attempts": 3}  # nothing counted twice


def test_a_resume_that_died_while_running_still_goes_to_a_person() -> None:
    action = decide(run("running", attempts=2), process=proc(ProcessStatus.GONE, attempt=2, exit_reason="lost"),
                    pr=pr(ci_status="failing"), resume_count=1, resume_keys=frozenset({f"ci_failed:{HEAD}"}))
    _transition(action, S.NEEDS_ATTENTION)


@pytest.mark.parametrize("keys", [frozenset(), frozenset({f"ci_failed:{OLD_HEAD}"})])
def test_a_lost_start_that_was_not_this_resume_is_a_failed_attempt(keys: frozenset[str]) -> None:
    action = decide(run("running", attempts=2), process=None, pr=pr(ci_status="failing"), resume_count=1,
                    resume_keys=keys)
    _transition(action, S.NEEDS_ATTENTION)


def test_a_lost_resume_whose_reason_is_gone_is_a_failed_attempt() -> None:
    action = decide(run("running", attempts=2), process=None, pr=pr(ci_status="passing"), resume_count=1)
    _transition(action, S.NEEDS_ATTENTION)
