"""The decision for job runs: one action from a frozen snapshot, no I/O, no clock.

Order of precedence: read errors, backoff guard, control intents, then what the state asks for.
A run's retry budget is `max_retries` extra attempts after the first.
"""

from __future__ import annotations

from datetime import timedelta

from optio.domain.actions import (
    Action,
    ClearControlIntent,
    DeferWithBackoff,
    Noop,
    StartAgent,
    Transition,
)
from optio.domain.backoff import read_error_delay
from optio.domain.executor_errors import decide_executor_error
from optio.domain.process_health import WATCH_RECHECK_S as WATCH_RECHECK_S
from optio.domain.process_health import assess
from optio.domain.retry import Failure, decide_retry
from optio.domain.snapshot import JobRunSnapshot
from optio.domain.states import JobRunState as S

CAPACITY_RECHECK_S = 2.0


def _failed_attempt(snap: JobRunSnapshot, failure: Failure, *, kill: bool = False) -> Action:
    run = snap.run
    decision = decide_retry(failure, attempt=run.attempts, max_retries=snap.max_retries, seed=run.id)
    if decision.outcome == "retry":
        until = snap.now + timedelta(seconds=decision.delay_s)
        return Transition(
            to=S.QUEUED,
            reason=decision.reason,
            patch={"reconcile_backoff_until": until, "error": decision.why},
            kill_process=kill,
            event="retry_scheduled",
        )
    return Transition(to=S.FAILED, reason=decision.reason, patch={"error": decision.why}, kill_process=kill,
                      event="failed")


def executor_error_gate(snap: JobRunSnapshot) -> Action | None:
    """Back off after an action that could not be applied; give the run up once it failed too often."""
    return decide_executor_error(snap.run, snap.executor_errors, snap.now, give_up_to=S.FAILED)


def decide_job_run(snap: JobRunSnapshot) -> Action:
    run = snap.run
    if snap.read_error is not None:
        return DeferWithBackoff(
            reason=f"could not read state: {snap.read_error}",
            delay_s=read_error_delay(run.reconcile_attempts, seed=run.id),
            count_attempt=True,
        )

    if run.state in (S.COMPLETED, S.FAILED, S.CANCELLED):
        if run.control_intent == "retry" and run.state != S.COMPLETED:
            return Transition(
                to=S.QUEUED,
                reason="retry requested",
                patch={"attempts": 0, "error": None, "reconcile_backoff_until": None},
                clear_intent=True,
                event="retried",
            )
        if run.control_intent is not None:
            return ClearControlIntent(reason=f"{run.control_intent} ignored: run is {run.state}")
        return Noop(reason=f"{run.state} is terminal")

    if run.reconcile_backoff_until is not None and snap.now < run.reconcile_backoff_until:
        wait = (run.reconcile_backoff_until - snap.now).total_seconds()
        return Noop(reason="in backoff", recheck_after_s=wait)

    if run.control_intent == "cancel":
        return Transition(
            to=S.CANCELLED,
            reason="cancel requested",
            kill_process=run.state == S.RUNNING,
            clear_intent=True,
            event="cancelled",
        )
    gave_up = executor_error_gate(snap)
    if gave_up is not None:
        return gave_up
    if run.control_intent is not None:
        return ClearControlIntent(reason=f"{run.control_intent} ignored: run is {run.state}")

    if run.state == S.QUEUED:
        if snap.capacity.full:
            return Noop(reason="waiting for capacity", recheck_after_s=CAPACITY_RECHECK_S)
        return StartAgent(
            to=S.RUNNING,
            reason=f"starting attempt {run.attempts + 1}",
            patch={"attempts": run.attempts + 1},
            event="started",
        )

    # running
    if snap.budget_usd is not None and snap.cost_usd >= snap.budget_usd:
        why = f"budget exceeded: ${snap.cost_usd:.4f} spent of ${snap.budget_usd:.4f}"
        return Transition(to=S.FAILED, reason=why, patch={"error": why}, kill_process=True, event="failed")
    health = assess(run, snap.process, now=snap.now, stall_threshold_s=snap.stall_threshold_s)
    if health.outcome == "failed":
        assert health.failure is not None
        return _failed_attempt(snap, health.failure, kill=health.kill)
    if health.outcome == "succeeded":
        return Transition(to=S.COMPLETED, reason="agent exited 0", patch={"error": None}, event="completed")
    return Noop(reason=f"agent {health.outcome}", recheck_after_s=health.recheck_after_s)
