"""The decision for persistent agents: one action from a frozen snapshot, no I/O, no clock.

An agent cycles ``idle -> queued -> provisioning -> running -> idle``: a pending message queues it, opening a
turn (queued -> provisioning) drains the inbox, the turn's process starts (provisioning -> running), and when
it ends the agent idles, or queues again at once if messages arrived meanwhile. One state machine per agent
and only ``provisioning`` ever starts a process, so two turns of one agent never run at once and a wake
during a turn is never lost: it is a pending message the end of the turn looks at.

Order of precedence: read errors, control intents (pause, resume, restart, archive), executor errors, the
retry backoff, then what the state asks for. ``failed`` (after ``max_consecutive_failures`` failed turns in a
row) is left only by ``resume``; ``archived`` is terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from optio.domain.actions import (
    Action,
    ClearControlIntent,
    DeferWithBackoff,
    Noop,
    StartAgent,
    Transition,
)
from optio.domain.backoff import backoff_seconds, read_error_delay
from optio.domain.executor_errors import decide_executor_error
from optio.domain.process_health import assess
from optio.domain.snapshot import Capacity, ExecutorErrorPolicy, ProcessView, RunView
from optio.domain.states import AgentState as S

INTENTS = ("pause", "resume", "restart", "archive")
CAPACITY_RECHECK_S = 2.0
BUDGET_EXCEEDED = "budget_exceeded"
IN_TURN = (S.PROVISIONING, S.RUNNING)


@dataclass(frozen=True)
class AgentSnapshot:
    """What the decision knows of one agent.

    ``pending`` counts the inbox messages no turn has processed, leaving out those the open turn drained.
    ``cost_today`` is what the agent spent since the start of the UTC day, the open turn included.
    """

    now: datetime
    run: RunView
    pending: int = 0
    process: ProcessView | None = None
    consecutive_failures: int = 0
    max_consecutive_failures: int = 3
    max_cost_usd: float | None = None
    cost_today: float = 0.0
    capacity: Capacity = field(default_factory=Capacity)
    stall_threshold_s: float = 600.0
    retry_base_s: float = 1.0
    lifecycle: str = "on-demand"
    idle_timeout_s: float = 600.0
    last_turn_at: datetime | None = None
    session_id: str | None = None
    executor_errors: ExecutorErrorPolicy = field(default_factory=ExecutorErrorPolicy)
    read_error: str | None = None


def session_is_warm(lifecycle: str, idle_timeout_s: float, last_turn_at: datetime | None, now: datetime) -> bool:
    """Whether the next turn resumes the previous session: always-on always, sticky within its idle timeout."""
    if lifecycle == "always-on":
        return True
    if lifecycle == "sticky" and last_turn_at is not None:
        return (now - last_turn_at).total_seconds() <= idle_timeout_s
    return False


def over_budget(snap: AgentSnapshot) -> bool:
    return snap.max_cost_usd is not None and snap.cost_today >= snap.max_cost_usd


def _end_turn(run: RunView, outcome: str) -> dict[str, Any]:
    """The patch that tells the transaction closing an open turn how it went (nothing when none is open)."""
    return {"last_turn_outcome": outcome} if run.state in IN_TURN else {}


def _intent(snap: AgentSnapshot) -> Action | None:
    run = snap.run
    intent = run.control_intent
    if intent is None:
        return None
    kill = run.state == S.RUNNING
    if intent not in INTENTS:
        return ClearControlIntent(reason=f"unknown intent {intent!r} ignored")
    if intent == "archive":
        return Transition(to=S.ARCHIVED, reason="archive requested", kill_process=kill, clear_intent=True,
                          patch={**_end_turn(run, "interrupted"), "paused_reason": None}, event="archived")
    if intent == "pause":
        if run.state in (S.PAUSED, S.FAILED):
            return ClearControlIntent(reason=f"pause ignored: agent is {run.state}")
        return Transition(to=S.PAUSED, reason="pause requested", kill_process=kill, clear_intent=True,
                          patch={**_end_turn(run, "interrupted"), "paused_reason": "requested"}, event="paused")
    if intent == "resume":
        fresh = {"consecutive_failures": 0, "paused_reason": None, "reconcile_backoff_until": None, "error": None}
        if run.state == S.PAUSED:
            to = S.QUEUED if snap.pending else S.IDLE
            return Transition(to=to, reason="resume requested", clear_intent=True, patch=fresh, event="resumed")
        if run.state == S.FAILED:
            return Transition(to=S.IDLE, reason="resume requested", clear_intent=True, patch=fresh, event="resumed")
        return ClearControlIntent(reason=f"resume ignored: agent is {run.state}")
    # restart: end the turn in progress (its messages stay pending) and start over with a fresh session.
    if run.state == S.FAILED:
        return ClearControlIntent(reason="restart ignored: a failed agent is brought back by resume")
    fresh_session = {"agent_session_id": None, "reconcile_backoff_until": None}
    if run.state in IN_TURN:
        return Transition(to=S.QUEUED, reason="restart requested", kill_process=kill, clear_intent=True,
                          patch={**_end_turn(run, "interrupted"), **fresh_session}, event="restarted")
    if run.state == S.PAUSED:
        to = S.QUEUED if snap.pending else S.IDLE
        return Transition(to=to, reason="restart requested", clear_intent=True,
                          patch={**fresh_session, "paused_reason": None, "consecutive_failures": 0},
                          event="restarted")
    return Transition(to=run.state, reason="restart requested: the next turn starts a fresh session",
                      clear_intent=True, patch=fresh_session, event="restarted")


def _budget_pause(snap: AgentSnapshot) -> Transition:
    assert snap.max_cost_usd is not None
    why = f"daily budget exceeded: ${snap.cost_today:.4f} spent of ${snap.max_cost_usd:.4f}"
    return Transition(to=S.PAUSED, reason=why, kill_process=snap.run.state == S.RUNNING, event=BUDGET_EXCEEDED,
                      patch={**_end_turn(snap.run, BUDGET_EXCEEDED), "paused_reason": BUDGET_EXCEEDED,
                             "error": why})


def _turn_failed(snap: AgentSnapshot, why: str, *, kill: bool, retry_after_s: float | None) -> Transition:
    run = snap.run
    failures = snap.consecutive_failures + 1
    patch: dict[str, Any] = {"consecutive_failures": failures, "last_turn_outcome": "failed", "error": why}
    if failures >= snap.max_consecutive_failures:
        return Transition(to=S.FAILED, reason=f"turn {run.attempts} failed ({failures} in a row): {why}",
                          kill_process=kill, patch=patch, event="failed")
    delay = backoff_seconds(failures, seed=run.id, base_s=snap.retry_base_s)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    patch["reconcile_backoff_until"] = snap.now + timedelta(seconds=delay)
    return Transition(to=S.QUEUED, reason=f"turn {run.attempts} failed ({failures} of "
                      f"{snap.max_consecutive_failures}): {why}; retrying in {delay:.1f}s",
                      kill_process=kill, patch=patch, event="turn_failed")


def decide_agent(snap: AgentSnapshot) -> Action:
    run = snap.run
    if snap.read_error is not None:
        return DeferWithBackoff(reason=f"could not read state: {snap.read_error}",
                                delay_s=read_error_delay(run.reconcile_attempts, seed=run.id), count_attempt=True)
    if run.state == S.ARCHIVED:
        if run.control_intent is not None:
            return ClearControlIntent(reason=f"{run.control_intent} ignored: agent is archived")
        return Noop(reason="archived")

    by_intent = _intent(snap)
    if by_intent is not None:
        return by_intent

    if run.state in (S.QUEUED, S.PROVISIONING, S.RUNNING):
        gave_up = decide_executor_error(run, snap.executor_errors, snap.now, give_up_to=S.FAILED,
                                        requeue_from=frozenset({S.PROVISIONING}), requeue_to=S.QUEUED)
        if gave_up is not None:
            if isinstance(gave_up, Transition) and run.state in IN_TURN:
                return Transition(to=gave_up.to, reason=gave_up.reason, kill_process=gave_up.kill_process,
                                  patch={**gave_up.patch, **_end_turn(run, "failed")}, event=gave_up.event)
            return gave_up

    if run.state == S.IDLE:
        if snap.pending:
            return Transition(to=S.QUEUED, reason=f"{snap.pending} message(s) waiting", event="woken")
        return Noop(reason="idle: no messages")
    if run.state in (S.PAUSED, S.FAILED):
        return Noop(reason=f"{run.state}: {snap.pending} message(s) wait")

    if run.state == S.QUEUED:
        if run.reconcile_backoff_until is not None and snap.now < run.reconcile_backoff_until:
            return Noop(reason="in backoff", recheck_after_s=(run.reconcile_backoff_until - snap.now).total_seconds())
        if over_budget(snap):
            return _budget_pause(snap)
        if not snap.pending:
            return Transition(to=S.IDLE, reason="no messages left to handle", event="idle")
        if snap.capacity.full:
            return Noop(reason="waiting for capacity", recheck_after_s=CAPACITY_RECHECK_S)
        patch: dict[str, Any] = {"attempts": run.attempts + 1, "last_turn_outcome": None, "log_bytes": 0,
                                 "log_dropped_bytes": 0, "reconcile_backoff_until": None}
        if snap.session_id is not None and not session_is_warm(snap.lifecycle, snap.idle_timeout_s,
                                                               snap.last_turn_at, snap.now):
            patch["agent_session_id"] = None  # cold start: the next turn begins a new session
        return Transition(to=S.PROVISIONING, reason=f"turn {run.attempts + 1}: draining {snap.pending} message(s)",
                          patch=patch, event="turn_started")

    if run.state == S.PROVISIONING:
        return StartAgent(to=S.RUNNING, reason=f"starting turn {run.attempts}", event="running")

    # running: a turn that already ended is judged on how it ended; one still going stops at the budget.
    health = assess(run, snap.process, now=snap.now, stall_threshold_s=snap.stall_threshold_s)
    if health.outcome == "failed":
        assert health.failure is not None
        return _turn_failed(snap, health.failure.why, kill=health.kill,
                            retry_after_s=health.failure.retry_after_s)
    if health.outcome == "succeeded":
        patch = {"consecutive_failures": 0, "last_turn_outcome": "succeeded", "error": None}
        if snap.pending:
            return Transition(to=S.QUEUED, reason=f"turn {run.attempts} done; {snap.pending} message(s) arrived "
                              "during it", patch=patch, event="turn_succeeded")
        return Transition(to=S.IDLE, reason=f"turn {run.attempts} done", patch=patch, event="turn_succeeded")
    if over_budget(snap):
        return _budget_pause(snap)
    return Noop(reason=f"turn {run.attempts}: agent {health.outcome}", recheck_after_s=health.recheck_after_s)
