"""The reconcile hot path: a claimed batch of job runs through snapshot → decide → CAS in two transactions.

The per-item path pays, for every queue item, an ORM load in its own read transaction and (for most
decisions) a write transaction of its own. Here a batch of job-run items is read with set-based Core
selects in one read transaction, decided in pure code, and every decision whose whole effect is rows —
no-ops, rechecks, clearing an intent, transitions that kill or launch nothing — is applied together with
the batch's ack in ONE write transaction. The guarantees stay those of the per-item path:

- every state change is the same compare-and-swap write (`executor.apply_in`, the code `executor.apply`
  runs); a CAS that loses enqueues the run again ("stale") in the same transaction, so it is looked at anew;
- every follow-up enqueue is in the transaction of the change that caused it, and the ack is too: the
  ack deletes an item only if nobody (this batch included) enqueued it again meanwhile;
- a worker that dies before the commit wrote nothing: its claims lapse after the queue lease and another
  worker takes the items up again.

Runs this path does not decide are handed back for the per-item path: running ones (their snapshot asks the
runtime whether the process lives), ones with a recorded executor error, and decisions with side effects
beyond rows (starting an agent, killing one). Other run kinds always take the per-item path: their
snapshots read the forge, worktrees and reviews.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from optio.control import executor
from optio.control.context import ControlContext
from optio.control.handlers import AnyLoaded, Loaded, Outcome
from optio.control.kinds import job
from optio.domain.actions import Action, StartAgent, target_state
from optio.domain.snapshot import Capacity
from optio.observability import metrics, tracing
from optio.store import admission, hotpath, queue
from optio.store.queue import ClaimedItem
from optio.store.types import utcnow

log = structlog.get_logger("optio.reconcile")

KINDS = frozenset({job.KIND})
# Items of the hot kinds claimed per batch: one read and one write transaction for this many decisions,
# while the write lock is held for a few milliseconds at most.
BATCH = 128


@dataclass(frozen=True)
class Decided:
    """One item of a batch with its snapshot and decision (`loaded` None: the run is gone)."""

    item: ClaimedItem
    loaded: AnyLoaded | None
    action: Action | None


@dataclass(frozen=True)
class Plan:
    now: datetime
    decided: list[Decided]
    rest: list[ClaimedItem]  # left to the per-item path, not acked here


def plan(ctx: ControlContext, items: Sequence[ClaimedItem], now: datetime | None = None) -> Plan:
    """Read the batch's runs in one read transaction and decide each that this path may apply."""
    now = now or utcnow()
    mine = [i for i in items if i.kind in KINDS]
    rest = [i for i in items if i.kind not in KINDS]
    active = 0
    per_job: dict[int, int] = {}
    with ctx.db.read() as session:
        rows = hotpath.load_job_runs(session, [(i.run_id, i.workspace_id) for i in mine])
        queued_jobs = [r.job_id for r in rows.values() if job.needs_capacity(r)]
        if queued_jobs:
            active = admission.active_processes(session)
            per_job = hotpath.running_per_job(session, queued_jobs)
    handler = ctx.handlers[job.KIND]
    decided: list[Decided] = []
    for item in mine:
        row = rows.get(item.run_id)
        if row is None:
            decided.append(Decided(item, None, None))
            continue
        if row.state == "running" or row.executor_error_count:
            rest.append(item)
            continue
        capacity = Capacity()
        if job.needs_capacity(row):
            capacity = job.job_capacity(ctx, active, per_job.get(row.job_id, 0), row.max_concurrent_runs)
        snapshot = job.job_snapshot(ctx, row, max_retries=row.max_retries, budget_usd=row.budget_usd,
                                    capacity=capacity, process=None, now=now)
        action = handler.decide(snapshot)
        if isinstance(action, StartAgent):
            # The start goes one by one (it launches a process); the runs after it in this batch see its slot
            # taken, as they would had they been looked at after it, instead of all going one by one too.
            active += 1
            per_job[row.job_id] = per_job.get(row.job_id, 0) + 1
        if not executor.batchable(action):
            rest.append(item)
            continue
        decided.append(Decided(item, Loaded(workspace_id=item.workspace_id, snapshot=snapshot, facts=None), action))
    return Plan(now, decided, rest)


def apply(ctx: ControlContext, planned: Plan) -> list[ClaimedItem] | None:
    """Apply the planned decisions and ack their items in one write transaction.

    Returns the items left for the per-item path, or None when the transaction failed: then nothing of it
    was written and the caller reconciles every item of the batch one by one instead.
    """
    if not planned.decided:
        return planned.rest
    handler = ctx.handlers[job.KIND]
    outcomes: list[Outcome] = []
    # Runs are CAS-written in id order, then the queue rows are locked in (kind, run_id) order (ack): runs
    # before queue rows, each in one order, as the per-item path and the API take them (a deadlock PostgreSQL
    # still reported would fail the transaction, and the batch would go one by one).
    decided = sorted(planned.decided, key=lambda d: d.item.run_id)
    try:
        with ctx.db.write() as session:
            for d in decided:
                if d.loaded is None or d.action is None:
                    outcomes.append(Outcome("applied", "run gone"))
                else:
                    outcomes.append(executor.apply_in(ctx, handler, session, d.loaded, d.action, planned.now))
            queue.ack(session, [d.item for d in decided])
    except Exception:
        log.exception("hot_path_error", items=len(decided))
        return None
    counts: Counter[tuple[str, str]] = Counter()
    decisions = log.bind()  # bound once per batch, not again for every line
    traced = tracing.enabled()
    for d, outcome in zip(decided, outcomes, strict=True):
        if d.loaded is None or d.action is None:
            continue
        executor.after_commit(ctx, handler, d.loaded, d.action, outcome)
        counts[(d.action.name, outcome.status)] += 1
        if traced:  # a span per decision, as the per-item path makes, inside the batch's span
            with tracing.span("reconcile", {"optio.run.kind": d.item.kind, "optio.run.id": d.item.run_id,
                                            "optio.outcome": outcome.status}):
                pass
        run = d.loaded.run
        to = target_state(d.action)
        decisions.info("decision", kind=d.item.kind, id=d.item.run_id, action=d.action.name, **{"from": run.state},
                       to=to if to is not None else run.state, reason=d.action.reason, outcome=outcome.status,
                       detail=outcome.detail or None)
    for (action_name, status), n in counts.items():
        metrics.DECISIONS.labels(job.KIND, action_name, status).inc(n)
    return planned.rest


def reconcile_batch(ctx: ControlContext, items: Sequence[ClaimedItem]) -> list[ClaimedItem]:
    """Reconcile what the hot path can of a claimed batch; returns the items left for the per-item path."""
    with tracing.span("reconcile_batch", {"optio.batch.size": len(items)}) as span:
        try:
            planned = plan(ctx, items)
        except Exception:
            log.exception("hot_path_error", items=len(items))
            return list(items)
        rest = apply(ctx, planned)
        span.set_attribute("optio.batch.per_item", len(items) if rest is None else len(rest))
        return list(items) if rest is None else rest

