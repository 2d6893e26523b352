"""The persistent agent's decision, over every state x intent x pending x process fact x failure count x budget.

Properties: every transition is one the state machine allows; only `provisioning` starts a process (so two
turns never overlap); a pending message always leads towards a turn; `failed` is left only by `resume`;
`archived` never moves; a turn's end always says how it went; the decision is deterministic.
"""

from __future__ import annotations

import itertools
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
)
from optio.domain.reconcile.agent import (
    BUDGET_EXCEEDED,
    AgentSnapshot,
    decide_agent,
    session_is_warm,
)
from optio.domain.snapshot import Capacity, ProcessStatus, ProcessView, RunView
from optio.domain.states import AgentState as S
from optio.domain.states import RunKind, check_transition

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
STATES = list(S)
INTENTS = [None, "pause", "resume", "restart", "archive", "bogus"]
PROCESSES: list[ProcessView | None] = [
    None,
    ProcessView(attempt=4, status=ProcessStatus.STARTING),
    ProcessView(attempt=4, status=ProcessStatus.ALIVE, started_at=NOW - timedelta(seconds=5),
                last_output_at=NOW - timedelta(seconds=1)),
    ProcessView(attempt=4, status=ProcessStatus.ALIVE, started_at=NOW - timedelta(hours=2)),  # stalled
    ProcessView(attempt=4, status=ProcessStatus.EXITED, exit_code=0, exit_reason="exited"),
    ProcessView(attempt=4, status=ProcessStatus.EXITED, exit_code=3, exit_reason="exited"),
    ProcessView(attempt=4, status=ProcessStatus.EXITED, exit_code=None, exit_reason="timeout"),
    ProcessView(attempt=4, status=ProcessStatus.GONE, exit_reason="lost"),
    ProcessView(attempt=3, status=ProcessStatus.EXITED, exit_code=0, exit_reason="exited"),  # an older turn's
]


def snap(state: str, *, intent: str | None = None, pending: int = 0, process: ProcessView | None = None,
         failures: int = 0, limit: int = 3, budget: float | None = None, spent: float = 0.0,
         full: bool = False, backoff: datetime | None = None, **kw: object) -> AgentSnapshot:
    run = RunView(id=11, kind=RunKind.AGENT, state=state, version=5, control_intent=intent, attempts=4,
                  reconcile_backoff_until=backoff)
    cap = Capacity(running_global=4, max_global=4) if full else Capacity()
    return AgentSnapshot(now=NOW, run=run, pending=pending, process=process, consecutive_failures=failures,
                         max_consecutive_failures=limit, max_cost_usd=budget, cost_today=spent, capacity=cap,
                         stall_threshold_s=600.0, **kw)  # type: ignore[arg-type]


def target(action: Action, state: str) -> str:
    return action.to if isinstance(action, Transition | StartAgent) else state


def check_invariants(s: AgentSnapshot, action: Action) -> None:
    state, intent = s.run.state, s.run.control_intent
    to = target(action, state)
    if to != state:
        check_transition(RunKind.AGENT, state, to)
    # Only provisioning starts a process; a start never happens with an intent waiting.
    if isinstance(action, StartAgent):
        assert state == S.PROVISIONING and intent is None
    # archived never moves.
    if state == S.ARCHIVED:
        assert isinstance(action, Noop | ClearControlIntent)
    # failed is left only by resume (or archive, which ends the agent).
    if state == S.FAILED and to != S.FAILED:
        assert intent in ("resume", "archive")
    # Leaving an open turn always says how the turn went (the transaction that closes it reads this).
    if state in (S.PROVISIONING, S.RUNNING) and isinstance(action, Transition) and to not in (S.RUNNING,):
        assert action.patch.get("last_turn_outcome") in ("succeeded", "failed", "interrupted", BUDGET_EXCEEDED)
    # A running process is killed whenever the agent leaves running for a state that is not a success.
    if state == S.RUNNING and isinstance(action, Transition) and to != S.RUNNING:
        outcome = action.patch.get("last_turn_outcome")
        if outcome in ("interrupted", BUDGET_EXCEEDED):
            assert action.kill_process
    # A success marks it so, and never leaves waiting messages behind: pending -> queued at once.
    if isinstance(action, Transition) and action.patch.get("last_turn_outcome") == "succeeded":
        assert to == (S.QUEUED if s.pending else S.IDLE)
    # An idle agent with messages and no intent always moves towards a turn.
    if state == S.IDLE and s.pending and intent is None:
        assert to == S.QUEUED
    # Intents are consumed (or the agent ends): an intent never stays forever.
    if intent is not None and state != S.ARCHIVED:
        assert isinstance(action, ClearControlIntent) or (isinstance(action, Transition) and action.clear_intent)


def test_every_state_intent_pending_and_process_fact() -> None:
    """The whole product of the small dimensions, checked exhaustively."""
    count = 0
    for state, intent, pending, process, failures, (budget, spent), full in itertools.product(
            STATES, INTENTS, (0, 1, 7), PROCESSES, (0, 1, 2), ((None, 0.0), (1.0, 0.5), (1.0, 1.5)), (False, True)):
        s = snap(state, intent=intent, pending=pending, process=process, failures=failures, budget=budget,
                 spent=spent, full=full)
        action = decide_agent(s)
        check_invariants(s, action)
        assert decide_agent(s) == action  # deterministic
        count += 1
    assert count == 7 * 6 * 3 * 9 * 3 * 3 * 2


@settings(max_examples=400, deadline=None)
@given(state=st.sampled_from(STATES), intent=st.sampled_from(INTENTS), pending=st.integers(0, 200),
       process=st.sampled_from(PROCESSES), failures=st.integers(0, 10), limit=st.integers(1, 10),
       budget=st.none() | st.floats(0, 10), spent=st.floats(0, 20), full=st.booleans(),
       backoff_s=st.none() | st.floats(-100, 100), read_error=st.none() | st.just("db locked"),
       lifecycle=st.sampled_from(["on-demand", "sticky", "always-on"]), session=st.none() | st.just("sess-1"),
       idle_s=st.none() | st.floats(0, 3600))
def test_invariants_hold_for_any_snapshot(state: str, intent: str | None, pending: int, process: ProcessView | None,
                                          failures: int, limit: int, budget: float | None, spent: float, full: bool,
                                          backoff_s: float | None, read_error: str | None, lifecycle: str,
                                          session: str | None, idle_s: float | None) -> None:
    backoff = NOW + timedelta(seconds=backoff_s) if backoff_s is not None else None
    last = NOW - timedelta(seconds=idle_s) if idle_s is not None else None
    s = snap(state, intent=intent, pending=pending, process=process, failures=failures, limit=limit, budget=budget,
             spent=spent, full=full, backoff=backoff, read_error=read_error, lifecycle=lifecycle, session_id=session,
             last_turn_at=last, idle_timeout_s=600.0)
    action = decide_agent(s)
    if read_error is not None:
        assert isinstance(action, DeferWithBackoff)
        return
    check_invariants(s, action)


def test_the_cycle_idle_queued_provisioning_running_idle() -> None:
    assert target(decide_agent(snap(S.IDLE, pending=2)), S.IDLE) == S.QUEUED
    opening = decide_agent(snap(S.QUEUED, pending=2))
    assert isinstance(opening, Transition) and opening.to == S.PROVISIONING
    assert opening.patch["attempts"] == 5  # the turn number: the attempt of its process and logs
    assert isinstance(decide_agent(snap(S.PROVISIONING)), StartAgent)
    done = decide_agent(snap(S.RUNNING, process=PROCESSES[4]))
    assert isinstance(done, Transition) and done.to == S.IDLE and done.patch["consecutive_failures"] == 0


def test_a_wake_while_running_queues_the_next_turn_and_never_starts_a_second() -> None:
    alive = PROCESSES[2]
    assert isinstance(decide_agent(snap(S.RUNNING, pending=3, process=alive)), Noop)
    done = decide_agent(snap(S.RUNNING, pending=3, process=PROCESSES[4]))
    assert isinstance(done, Transition) and done.to == S.QUEUED and done.patch["last_turn_outcome"] == "succeeded"


@pytest.mark.parametrize("process", [PROCESSES[5], PROCESSES[6], PROCESSES[7], None, PROCESSES[8]])
def test_the_third_failed_turn_in_a_row_fails_the_agent(process: ProcessView | None) -> None:
    first = decide_agent(snap(S.RUNNING, pending=0, process=process, failures=0))
    assert isinstance(first, Transition) and first.to == S.QUEUED and first.patch["consecutive_failures"] == 1
    assert first.patch["reconcile_backoff_until"] > NOW
    third = decide_agent(snap(S.RUNNING, process=process, failures=2))
    assert isinstance(third, Transition) and third.to == S.FAILED and third.patch["last_turn_outcome"] == "failed"


def test_only_resume_leaves_failed_and_it_resets_the_failure_count() -> None:
    for intent in (None, "pause", "restart", "bogus"):
        assert target(decide_agent(snap(S.FAILED, intent=intent, pending=5, failures=3)), S.FAILED) == S.FAILED
    back = decide_agent(snap(S.FAILED, intent="resume", pending=5, failures=3))
    assert isinstance(back, Transition) and back.to == S.IDLE and back.patch["consecutive_failures"] == 0
    # and from idle the waiting messages queue the next turn
    assert target(decide_agent(snap(S.IDLE, pending=5)), S.IDLE) == S.QUEUED


def test_a_queued_agent_in_backoff_waits_but_intents_act_at_once() -> None:
    later = NOW + timedelta(seconds=30)
    wait = decide_agent(snap(S.QUEUED, pending=1, backoff=later))
    assert isinstance(wait, Noop) and wait.recheck_after_s == pytest.approx(30)
    assert target(decide_agent(snap(S.QUEUED, intent="pause", pending=1, backoff=later)), S.QUEUED) == S.PAUSED


def test_budget_exceeded_pauses_with_its_reason_and_kills_a_running_turn() -> None:
    running = decide_agent(snap(S.RUNNING, process=PROCESSES[2], budget=1.0, spent=1.2))
    assert isinstance(running, Transition) and running.to == S.PAUSED and running.kill_process
    assert running.patch["paused_reason"] == BUDGET_EXCEEDED and running.event == BUDGET_EXCEEDED
    # A turn that already finished keeps its result: the budget stops the next one, not this one.
    finished = decide_agent(snap(S.RUNNING, process=PROCESSES[4], pending=1, budget=1.0, spent=1.2))
    assert isinstance(finished, Transition) and finished.to == S.QUEUED
    assert finished.patch["last_turn_outcome"] == "succeeded"
    queued = decide_agent(snap(S.QUEUED, pending=1, budget=1.0, spent=1.0))
    assert isinstance(queued, Transition) and queued.to == S.PAUSED and queued.patch["paused_reason"] == BUDGET_EXCEEDED
    under = decide_agent(snap(S.QUEUED, pending=1, budget=1.0, spent=0.2))
    assert isinstance(under, Transition) and under.to == S.PROVISIONING


def test_pause_and_restart_and_archive_end_a_running_turn_as_interrupted() -> None:
    for intent, to in (("pause", S.PAUSED), ("restart", S.QUEUED), ("archive", S.ARCHIVED)):
        action = decide_agent(snap(S.RUNNING, intent=intent, process=PROCESSES[2]))
        assert isinstance(action, Transition) and action.to == to and action.kill_process
        assert action.patch["last_turn_outcome"] == "interrupted"
    restart = decide_agent(snap(S.RUNNING, intent="restart", process=PROCESSES[2], session_id="s"))
    assert isinstance(restart, Transition) and restart.patch["agent_session_id"] is None


def test_lifecycle_decides_whether_the_session_stays_warm() -> None:
    assert session_is_warm("always-on", 1, NOW - timedelta(days=3), NOW)
    assert session_is_warm("sticky", 600, NOW - timedelta(seconds=60), NOW)
    assert not session_is_warm("sticky", 600, NOW - timedelta(seconds=601), NOW)
    assert not session_is_warm("on-demand", 600, NOW, NOW)
    cold = decide_agent(snap(S.QUEUED, pending=1, lifecycle="on-demand", session_id="s", last_turn_at=NOW))
    assert isinstance(cold, Transition) and cold.patch["agent_session_id"] is None
    warm = decide_agent(snap(S.QUEUED, pending=1, lifecycle="sticky", session_id="s", last_turn_at=NOW))
    assert isinstance(warm, Transition) and "agent_session_id" not in warm.patch


def test_capacity_full_waits_and_nothing_pending_goes_idle() -> None:
    assert isinstance(decide_agent(snap(S.QUEUED, pending=1, full=True)), Noop)
    assert target(decide_agent(snap(S.QUEUED, pending=0)), S.QUEUED) == S.IDLE
