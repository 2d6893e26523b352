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
    Noop,
    StartAgent,
    Transition,
    target_state,
)
from optio.domain.backoff import backoff_seconds
from optio.domain.reconcile.job import CAPACITY_RECHECK_S, WATCH_RECHECK_S, decide_job_run
from optio.domain.snapshot import Capacity, JobRunSnapshot, ProcessStatus, ProcessView, RunView
from optio.domain.states import JobRunState, RunKind, check_transition

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def run(state: str = "running", **kw: object) -> RunView:
    fields: dict[str, object] = {
        "id": 7,
        "kind": RunKind.JOB_RUN,
        "state": state,
        "version": 3,
        "attempts": 1,
    }
    fields.update(kw)
    return RunView(**fields)  # type: ignore[arg-type]


def proc(status: ProcessStatus = ProcessStatus.ALIVE, **kw: object) -> ProcessView:
    fields: dict[str, object] = {"attempt": 1, "status": status, "started_at": NOW - timedelta(seconds=60)}
    fields.update(kw)
    return ProcessView(**fields)  # type: ignore[arg-type]


def snap(
    r: RunView | None = None,
    *,
    process: ProcessView | None = None,
    max_retries: int = 2,
    capacity: Capacity | None = None,
    read_error: str | None = None,
    stall_threshold_s: float = 900.0,
) -> JobRunSnapshot:
    return JobRunSnapshot(
        now=NOW,
        run=r or run(),
        max_retries=max_retries,
        process=process,
        capacity=capacity or Capacity(),
        stall_threshold_s=stall_threshold_s,
        read_error=read_error,
    )


# --- read errors and terminal states -----------------------------------------------------------------


def test_read_error_defers_and_counts_an_attempt() -> None:
    action = decide_job_run(snap(run(reconcile_attempts=2), read_error="database is locked"))
    assert isinstance(action, DeferWithBackoff)
    assert action.count_attempt is True
    assert "database is locked" in action.reason
    assert action.delay_s > 0


def test_read_error_delay_grows_with_reconcile_attempts() -> None:
    delays = [
        decide_job_run(snap(run(reconcile_attempts=n), read_error="x")).delay_s  # type: ignore[union-attr]
        for n in (0, 3, 6)
    ]
    assert delays[0] < delays[1] < delays[2] <= 60 * 1.25


def test_read_error_wins_over_everything() -> None:
    s = snap(
        run("queued", control_intent="cancel", reconcile_backoff_until=NOW + timedelta(hours=1)),
        read_error="x",
    )
    assert isinstance(decide_job_run(s), DeferWithBackoff)


@pytest.mark.parametrize("state", ["failed", "cancelled"])
def test_retry_of_a_finished_run_requeues_and_resets(state: str) -> None:
    action = decide_job_run(snap(run(state, control_intent="retry", attempts=3, error="boom")))
    assert isinstance(action, Transition)
    assert action.to == JobRunState.QUEUED
    assert action.clear_intent is True
    assert action.patch["attempts"] == 0
    assert action.patch["error"] is None
    assert action.patch["reconcile_backoff_until"] is None


def test_retry_of_a_completed_run_only_clears_the_intent() -> None:
    action = decide_job_run(snap(run("completed", control_intent="retry")))
    assert isinstance(action, ClearControlIntent)
    assert "completed" in action.reason


@pytest.mark.parametrize("state", ["completed", "failed", "cancelled"])
@pytest.mark.parametrize("intent", ["cancel", "resume", "something-else"])
def test_other_intents_on_finished_runs_are_cleared(state: str, intent: str) -> None:
    action = decide_job_run(snap(run(state, control_intent=intent)))
    assert isinstance(action, ClearControlIntent)
    assert intent in action.reason


@pytest.mark.parametrize("state", ["completed", "failed", "cancelled"])
def test_finished_runs_without_intent_do_nothing(state: str) -> None:
    action = decide_job_run(snap(run(state)))
    assert isinstance(action, Noop)
    assert action.recheck_after_s is None


def test_terminal_check_comes_before_the_backoff_guard() -> None:
    r = run("failed", control_intent="retry", reconcile_backoff_until=NOW + timedelta(minutes=5))
    assert isinstance(decide_job_run(snap(r)), Transition)


# --- backoff guard and intents on live runs --------------------------------------------------------


def test_backoff_guard_waits_until_the_backoff_ends() -> None:
    r = run("queued", reconcile_backoff_until=NOW + timedelta(seconds=42))
    action = decide_job_run(snap(r))
    assert isinstance(action, Noop)
    assert action.recheck_after_s == pytest.approx(42)


def test_backoff_in_the_past_is_ignored() -> None:
    r = run("queued", attempts=0, reconcile_backoff_until=NOW - timedelta(seconds=1))
    assert isinstance(decide_job_run(snap(r)), StartAgent)


def test_backoff_guard_holds_back_a_cancel() -> None:
    r = run("queued", control_intent="cancel", reconcile_backoff_until=NOW + timedelta(seconds=5))
    assert isinstance(decide_job_run(snap(r)), Noop)


@pytest.mark.parametrize(("state", "kill"), [("queued", False), ("running", True)])
def test_cancel_kills_only_a_running_agent(state: str, kill: bool) -> None:
    action = decide_job_run(snap(run(state, control_intent="cancel"), process=proc()))
    assert isinstance(action, Transition)
    assert action.to == JobRunState.CANCELLED
    assert action.kill_process is kill
    assert action.clear_intent is True


@pytest.mark.parametrize("state", ["queued", "running"])
@pytest.mark.parametrize("intent", ["retry", "resume", "unknown"])
def test_stray_intents_on_live_runs_are_cleared(state: str, intent: str) -> None:
    action = decide_job_run(snap(run(state, control_intent=intent), process=proc()))
    assert isinstance(action, ClearControlIntent)
    assert intent in action.reason and state in action.reason


# --- queued ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "capacity",
    [Capacity(running_global=4, max_global=4), Capacity(running_scope=1, max_scope=1)],
    ids=["global", "scope"],
)
def test_queued_waits_while_capacity_is_full(capacity: Capacity) -> None:
    action = decide_job_run(snap(run("queued"), capacity=capacity))
    assert isinstance(action, Noop)
    assert action.recheck_after_s == CAPACITY_RECHECK_S


def test_queued_starts_the_next_attempt() -> None:
    action = decide_job_run(snap(run("queued", attempts=2), capacity=Capacity(running_global=3, max_global=4)))
    assert isinstance(action, StartAgent)
    assert action.to == JobRunState.RUNNING
    assert action.patch == {"attempts": 3}
    assert action.prompt is None


# --- running -------------------------------------------------------------------------------------------


def _assert_retry(action: Action, why: str) -> None:
    assert isinstance(action, Transition)
    assert action.to == JobRunState.QUEUED
    assert why in action.reason
    assert action.patch["error"] is not None and why in action.patch["error"]
    assert action.patch["reconcile_backoff_until"] > NOW
    assert action.event == "retry_scheduled"


def test_running_without_a_process_is_a_failed_attempt() -> None:
    _assert_retry(decide_job_run(snap(run(attempts=1), process=None)), "never started")


def test_a_process_of_an_earlier_attempt_does_not_count() -> None:
    old = proc(ProcessStatus.EXITED, attempt=1, exit_code=0, exit_reason="exited")
    _assert_retry(decide_job_run(snap(run(attempts=2), process=old)), "never started")


def test_exit_zero_completes() -> None:
    action = decide_job_run(snap(process=proc(ProcessStatus.EXITED, exit_code=0, exit_reason="exited")))
    assert isinstance(action, Transition)
    assert action.to == JobRunState.COMPLETED
    assert action.patch == {"error": None}


def test_non_zero_exit_with_retries_left_requeues_with_backoff() -> None:
    r = run(attempts=2)
    action = decide_job_run(snap(r, max_retries=2, process=proc(ProcessStatus.EXITED, attempt=2, exit_code=3)))
    _assert_retry(action, "exited with code 3")
    assert isinstance(action, Transition)
    expected = NOW + timedelta(seconds=backoff_seconds(2, seed=r.id))
    assert action.patch["reconcile_backoff_until"] == expected
    assert action.kill_process is False


def test_non_zero_exit_without_retries_left_fails() -> None:
    r = run(attempts=3)
    action = decide_job_run(snap(r, max_retries=2, process=proc(ProcessStatus.EXITED, attempt=3, exit_code=1)))
    assert isinstance(action, Transition)
    assert action.to == JobRunState.FAILED
    assert "no retries left" in action.reason
    assert "reconcile_backoff_until" not in action.patch


def test_zero_retries_means_one_attempt() -> None:
    action = decide_job_run(snap(max_retries=0, process=proc(ProcessStatus.EXITED, exit_code=1)))
    assert isinstance(action, Transition) and action.to == JobRunState.FAILED


def test_timeout_is_a_failed_attempt() -> None:
    action = decide_job_run(snap(process=proc(ProcessStatus.EXITED, exit_code=0, exit_reason="timeout")))
    _assert_retry(action, "timed out")


def test_spawn_failure_is_a_failed_attempt_naming_the_error() -> None:
    p = proc(ProcessStatus.EXITED, exit_reason="spawn_failed", error="no such file: claude")
    _assert_retry(decide_job_run(snap(process=p)), "no such file: claude")


def test_spawn_failure_without_error_text() -> None:
    _assert_retry(decide_job_run(snap(process=proc(ProcessStatus.EXITED, exit_reason="spawn_failed"))), "unknown")


def test_gone_process_is_a_failed_attempt() -> None:
    _assert_retry(decide_job_run(snap(process=proc(ProcessStatus.GONE))), "died")


def test_stalled_agent_is_killed_and_retried() -> None:
    p = proc(last_output_at=NOW - timedelta(seconds=1000))
    action = decide_job_run(snap(process=p, stall_threshold_s=900))
    _assert_retry(action, "stalled")
    assert isinstance(action, Transition) and action.kill_process is True


def test_stalled_agent_without_retries_is_killed_and_failed() -> None:
    p = proc(last_output_at=NOW - timedelta(seconds=1000))
    action = decide_job_run(snap(run(attempts=1), max_retries=0, process=p))
    assert isinstance(action, Transition)
    assert action.to == JobRunState.FAILED and action.kill_process is True


@pytest.mark.parametrize(
    ("field", "when"),
    [("last_output_at", NOW - timedelta(seconds=10)), ("started_at", NOW - timedelta(seconds=10))],
)
def test_alive_agent_is_watched(field: str, when: datetime) -> None:
    p = replace(proc(started_at=None), **{field: when})
    action = decide_job_run(snap(process=p))
    assert isinstance(action, Noop)
    assert action.recheck_after_s == WATCH_RECHECK_S


def test_alive_agent_close_to_the_stall_threshold_is_rechecked_just_after_it() -> None:
    p = proc(last_output_at=NOW - timedelta(seconds=895))
    action = decide_job_run(snap(process=p, stall_threshold_s=900))
    assert isinstance(action, Noop)
    assert action.recheck_after_s == pytest.approx(6)


def test_heartbeat_is_the_last_resort_for_stall_detection() -> None:
    p = proc(started_at=None)
    stalled = decide_job_run(snap(run(heartbeat_at=NOW - timedelta(hours=1)), process=p))
    assert isinstance(stalled, Transition) and stalled.kill_process is True
    fresh = decide_job_run(snap(run(heartbeat_at=NOW - timedelta(seconds=5)), process=p))
    assert isinstance(fresh, Noop)


@pytest.mark.parametrize(
    "p",
    [proc(ProcessStatus.STARTING, started_at=None), proc(ProcessStatus.ALIVE, started_at=None)],
    ids=["starting", "alive-without-timestamps"],
)
def test_agent_starting_is_watched(p: ProcessView) -> None:
    action = decide_job_run(snap(process=p))
    assert isinstance(action, Noop)
    assert action.recheck_after_s == WATCH_RECHECK_S
    assert "starting" in action.reason


# --- properties ------------------------------------------------------------------------------------------

_times = st.one_of(st.none(), st.integers(-7200, 7200).map(lambda s: NOW + timedelta(seconds=s)))

_processes = st.one_of(
    st.none(),
    st.builds(
        ProcessView,
        attempt=st.integers(0, 5),
        status=st.sampled_from(list(ProcessStatus)),
        exit_code=st.one_of(st.none(), st.integers(-9, 255)),
        exit_reason=st.one_of(st.none(), st.sampled_from(["exited", "timeout", "killed", "spawn_failed", "lost"])),
        started_at=_times,
        last_output_at=_times,
        error=st.one_of(st.none(), st.text(max_size=20)),
    ),
)

_runs = st.builds(
    RunView,
    id=st.integers(1, 10_000),
    kind=st.just(RunKind.JOB_RUN),
    state=st.sampled_from([s.value for s in JobRunState]),
    version=st.integers(0, 100),
    control_intent=st.one_of(st.none(), st.sampled_from(["cancel", "retry", "resume", "bogus"])),
    reconcile_backoff_until=_times,
    reconcile_attempts=st.integers(0, 20),
    attempts=st.integers(0, 6),
    heartbeat_at=_times,
    started_at=_times,
    error=st.one_of(st.none(), st.text(max_size=10)),
)

_capacities = st.builds(
    Capacity,
    running_global=st.integers(0, 5),
    max_global=st.one_of(st.none(), st.integers(0, 5)),
    running_scope=st.integers(0, 5),
    max_scope=st.one_of(st.none(), st.integers(0, 5)),
)

_snapshots = st.builds(
    JobRunSnapshot,
    now=st.just(NOW),
    run=_runs,
    max_retries=st.integers(0, 4),
    process=_processes,
    capacity=_capacities,
    stall_threshold_s=st.floats(1, 3600),
    read_error=st.one_of(st.none(), st.just("boom")),
)


@settings(max_examples=500)
@given(_snapshots)
def test_decision_is_deterministic(s: JobRunSnapshot) -> None:
    assert decide_job_run(s) == decide_job_run(replace(s))


@settings(max_examples=1000)
@given(_snapshots)
def test_every_state_change_is_allowed_by_the_state_machine(s: JobRunSnapshot) -> None:
    action = decide_job_run(s)
    to = target_state(action)
    if to is not None and to != s.run.state:
        check_transition(RunKind.JOB_RUN, s.run.state, to)


@settings(max_examples=500)
@given(_snapshots)
def test_retries_are_scheduled_in_the_future_and_waits_are_positive(s: JobRunSnapshot) -> None:
    action = decide_job_run(s)
    if isinstance(action, Transition) and action.to == JobRunState.QUEUED and s.run.state == JobRunState.RUNNING:
        assert action.patch["reconcile_backoff_until"] > s.now
    if isinstance(action, Noop) and action.recheck_after_s is not None:
        assert action.recheck_after_s > 0
    if isinstance(action, DeferWithBackoff):
        assert action.delay_s > 0


# --- backoff ---------------------------------------------------------------------------------------------


@settings(max_examples=500)
@given(
    attempt=st.integers(-5, 200),
    seed=st.integers(0, 2**40),
    base=st.floats(0.01, 100),
    cap=st.floats(0.01, 10_000),
)
def test_backoff_stays_within_jitter_bounds(attempt: int, seed: int, base: float, cap: float) -> None:
    delay = backoff_seconds(attempt, seed=seed, base_s=base, cap_s=cap)
    raw = min(cap, base * 2 ** min(max(attempt, 1) - 1, 30))
    assert 0.75 * raw <= delay < 1.25 * raw
    assert delay < 1.25 * cap
    assert delay == backoff_seconds(attempt, seed=seed, base_s=base, cap_s=cap)


def test_backoff_grows_until_the_cap() -> None:
    raw = [backoff_seconds(n, seed=1, base_s=1.0, cap_s=300.0) for n in range(1, 15)]
    assert raw[0] < 1.25 and raw[4] >= 0.75 * 16
    assert all(d < 375 for d in raw)
    assert raw[-1] >= 0.75 * 300


def test_backoff_treats_attempts_below_one_as_the_first() -> None:
    assert backoff_seconds(0, seed=3) == backoff_seconds(1, seed=3)
    assert backoff_seconds(-4, seed=3) == backoff_seconds(1, seed=3)


def test_backoff_jitter_differs_across_runs() -> None:
    assert len({backoff_seconds(3, seed=s) for s in range(50)}) > 40


def test_budget_exceeded_kills_and_fails_without_retry() -> None:
    """A run that has spent its job's budget is stopped at once, whatever retries remain."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    snap = JobRunSnapshot(
        now=now, run=RunView(id=1, kind=RunKind.JOB_RUN, state="running", version=2, attempts=1),
        max_retries=5, process=ProcessView(attempt=1, status=ProcessStatus.ALIVE, last_output_at=now),
        capacity=Capacity(), budget_usd=0.50, cost_usd=0.51,
    )
    action = decide_job_run(snap)
    assert isinstance(action, Transition)
    assert action.to == "failed" and action.kill_process and "budget exceeded" in action.reason
    under = replace(snap, cost_usd=0.49)
    assert not isinstance(decide_job_run(under), Transition)
