"""Turns one decision into effects: a compare-and-swap write, then side effects.

The write, its event row and any follow-up enqueue share one transaction. Side effects that cannot be
rolled back (killing or launching a process) run only after that transaction committed, so a lost
race never kills or launches anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from optio.control.context import ControlContext
from optio.control.handlers import AnyLoaded, Outcome, RunKindHandler
from optio.control.processes import kill_run_processes
from optio.domain.actions import (
    Action,
    ClearControlIntent,
    DeferWithBackoff,
    Noop,
    PatchStatus,
    StartAgent,
    Transition,
)
from optio.domain.states import RunKind, check_transition
from optio.observability import metrics
from optio.store import queue, runs
from optio.store.session import Session

ADMISSION_RECHECK_S = 1.0


def _requeue_delay(values: dict[str, Any], now: datetime) -> float:
    until = values.get("reconcile_backoff_until")
    if isinstance(until, datetime):
        return max(0.0, (until - now).total_seconds())
    return 0.0


def write_transition(
    ctx: ControlContext,
    handler: RunKindHandler,
    snap: AnyLoaded,
    *,
    to: str,
    reason: str,
    event: str | None,
    patch: dict[str, Any],
    clear_intent: bool,
    now: datetime,
    extra_events: tuple[tuple[str, str], ...] = (),
    recheck_after_s: float = 0.0,
) -> bool:
    """CAS the run to `to` with `patch`; record the event; enqueue a follow-up. False = stale."""
    with ctx.db.write() as session:
        return write_transition_in(ctx, handler, session, snap, to=to, reason=reason, event=event, patch=patch,
                                   clear_intent=clear_intent, now=now, extra_events=extra_events,
                                   recheck_after_s=recheck_after_s)


def write_transition_in(
    ctx: ControlContext,
    handler: RunKindHandler,
    session: Session,
    snap: AnyLoaded,
    *,
    to: str,
    reason: str,
    event: str | None,
    patch: dict[str, Any],
    clear_intent: bool,
    now: datetime,
    extra_events: tuple[tuple[str, str], ...] = (),
    recheck_after_s: float = 0.0,
) -> bool:
    """`write_transition` inside the caller's transaction (the hot path applies a batch of them in one)."""
    run = snap.run
    if to != run.state:
        check_transition(RunKind(handler.kind), run.state, to)
    values = dict(patch)
    values["state"] = to
    values["reconcile_attempts"] = 0
    if clear_intent:
        values["control_intent"] = None
    if to in handler.terminal and to != run.state:
        values.setdefault("finished_at", now)
    if not handler.admit(ctx, session, snap, to):
        # Another worker took the last slot since the snapshot: look again when one frees up.
        queue.enqueue(session, handler.kind, run.id, snap.workspace_id, delay_s=ADMISSION_RECHECK_S,
                      reason="capacity taken meanwhile")
        return False
    if not runs.cas_update(session, handler.kind, run.id, run.version, values, now=now):
        queue.enqueue(session, handler.kind, run.id, snap.workspace_id, reason="stale")
        return False
    if to != run.state or event:
        runs.record_event(
            session,
            workspace_id=snap.workspace_id,
            kind=handler.kind,
            run_id=run.id,
            event=event or "transition",
            from_state=run.state,
            to_state=to,
            reason=reason,
            now=now,
        )
    for name, why in extra_events:
        runs.record_event(session, workspace_id=snap.workspace_id, kind=handler.kind, run_id=run.id,
                          event=name, from_state=to, to_state=to, reason=why, now=now)
    if to not in handler.terminal:
        queue.enqueue(session, handler.kind, run.id, snap.workspace_id,
                      delay_s=max(_requeue_delay(values, now), recheck_after_s), reason=f"after {to}")
    handler.on_transition(ctx, session, snap, to, now)
    return True


def batchable(action: Action) -> bool:
    """Whether all an action does is write rows (no process to kill or launch, nothing kind-specific).

    Such actions of many runs can share one transaction: `apply_in` each, commit, then `after_commit` each.
    """
    if isinstance(action, Transition):
        return not action.kill_process
    return isinstance(action, (Noop, ClearControlIntent))


def apply_in(ctx: ControlContext, handler: RunKindHandler, session: Session, snap: AnyLoaded, action: Action,
             now: datetime) -> Outcome:
    """Apply a `batchable` action inside the caller's transaction: the same writes `apply` makes."""
    if isinstance(action, Transition) and not action.kill_process:
        ok = write_transition_in(ctx, handler, session, snap, to=action.to, reason=action.reason,
                                 event=action.event, patch=dict(action.patch), clear_intent=action.clear_intent,
                                 now=now, recheck_after_s=action.recheck_after_s)
        return Outcome("applied") if ok else Outcome("stale")
    if isinstance(action, ClearControlIntent):
        return _clear_intent_in(handler, session, snap, now)
    if isinstance(action, Noop):
        return _noop_in(handler, session, snap, action)
    raise ValueError(f"action {action.name!r} is not batchable")


def after_commit(ctx: ControlContext, handler: RunKindHandler, snap: AnyLoaded, action: Action,
                 outcome: Outcome) -> None:
    """What `apply` does for a batchable action once its transaction committed."""
    if isinstance(action, Transition) and outcome.status == "applied":
        handler.after_commit(ctx, snap, action)


def _clear_intent_in(handler: RunKindHandler, session: Session, snap: AnyLoaded, now: datetime) -> Outcome:
    run = snap.run
    if not runs.cas_update(session, handler.kind, run.id, run.version, {"control_intent": None}, now=now):
        queue.enqueue(session, handler.kind, run.id, snap.workspace_id, reason="stale")
        return Outcome("stale")
    if run.state not in handler.terminal:
        queue.enqueue(session, handler.kind, run.id, snap.workspace_id, reason="intent cleared")
    return Outcome("applied")


def _noop_in(handler: RunKindHandler, session: Session, snap: AnyLoaded, action: Noop) -> Outcome:
    if action.recheck_after_s is None:
        return Outcome("applied")
    queue.enqueue(session, handler.kind, snap.run.id, snap.workspace_id, delay_s=max(0.05, action.recheck_after_s),
                  reason="recheck")
    return Outcome("deferred", f"{action.recheck_after_s:.1f}s")


def apply(ctx: ControlContext, handler: RunKindHandler, snap: AnyLoaded, action: Action, now: datetime) -> Outcome:
    run = snap.run
    ws = snap.workspace_id
    if isinstance(action, Transition):
        ok = write_transition(ctx, handler, snap, to=action.to, reason=action.reason, event=action.event,
                              patch=dict(action.patch), clear_intent=action.clear_intent, now=now,
                              recheck_after_s=action.recheck_after_s)
        if not ok:
            return Outcome("stale")
        if action.kill_process:
            kill_run_processes(ctx, handler.kind, run.id)
        handler.after_commit(ctx, snap, action)
        return Outcome("applied")

    if isinstance(action, StartAgent):
        attempt = int(action.patch.get("attempts", run.attempts))
        patch = dict(action.patch)
        if run.started_at is None:  # the first start; each attempt's own times are on its process row
            patch.setdefault("started_at", now)
        patch["heartbeat_at"] = now
        extra: tuple[tuple[str, str], ...] = ()
        if action.resume_reason:
            extra = (("resumed", f"agent resumed ({action.resume_reason})"),)
        if action.resume_key:
            # The resume key and counter move in the same CAS write as the start, so a crash can never
            # let the same failure on the same commit resume the agent twice.
            keys = set(getattr(snap.snapshot, "resume_keys", ()))
            patch["resume_keys"] = sorted(keys | {action.resume_key})
            patch["resume_count"] = int(getattr(snap.snapshot, "resume_count", 0)) + 1
        ok = write_transition(ctx, handler, snap, to=action.to, reason=action.reason,
                              event=action.event or "started", patch=patch,
                              clear_intent=action.clear_intent, now=now, extra_events=extra,
                              recheck_after_s=action.recheck_after_s)
        if not ok:
            return Outcome("stale")
        metrics.AGENT_ATTEMPTS.labels(handler.kind).inc()
        if action.resume_reason:
            metrics.RESUMES.labels(handler.kind, action.resume_reason).inc()
        handler.launch(ctx, snap, action, attempt)
        return Outcome("applied")

    if isinstance(action, PatchStatus):
        with ctx.db.write() as session:
            if not runs.cas_update(session, handler.kind, run.id, run.version, dict(action.patch), now=now):
                queue.enqueue(session, handler.kind, run.id, ws, reason="stale")
                return Outcome("stale")
            if action.event:
                runs.record_event(session, workspace_id=ws, kind=handler.kind, run_id=run.id,
                                  event=action.event, from_state=run.state, to_state=run.state,
                                  reason=action.reason, now=now)
            queue.enqueue(session, handler.kind, run.id, ws, reason="after patch")
        return Outcome("applied")

    if isinstance(action, ClearControlIntent):
        with ctx.db.write() as session:
            return _clear_intent_in(handler, session, snap, now)

    if isinstance(action, DeferWithBackoff):
        with ctx.db.write() as session:
            if action.count_attempt:
                runs.count_reconcile_attempt(session, handler.kind, run.id)
            queue.enqueue(session, handler.kind, run.id, ws, delay_s=action.delay_s, reason="deferred")
        return Outcome("deferred", f"{action.delay_s:.1f}s")

    if isinstance(action, Noop):
        if action.recheck_after_s is None:
            return Outcome("applied")
        with ctx.db.write() as session:
            return _noop_in(handler, session, snap, action)

    return handler.apply_special(ctx, snap, action, now)
