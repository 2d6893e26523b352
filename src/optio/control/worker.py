"""The worker pool: pop a queue item, snapshot, decide (pure), execute; plus the periodic resync.

Every decision is logged as one structured line: kind, id, action, from, to, reason, outcome.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from optio.control import executor, hotpath, processes, triggers
from optio.control.context import ControlContext
from optio.control.handlers import Outcome
from optio.control.ports import ForgeBusy
from optio.control.replicas import PR_WATCHER, RESYNC, TRIGGER_SCHEDULER, Replica
from optio.domain.actions import target_state
from optio.domain.backoff import snapshot_error_delay
from optio.observability import metrics, tracing
from optio.store import forge_hooks, queue, runs
from optio.store import resync as resync_store
from optio.store.db import DatabaseUnavailable
from optio.store.disk_full import is_disk_full
from optio.store.queue import ClaimedItem
from optio.store.session import Session
from optio.store.types import utcnow

log = structlog.get_logger("optio.reconcile")

# Items of kinds outside the hot path claimed per transaction: one. Each may run a git operation, a CI
# wait or an agent launch; an item claimed behind it would wait for it although another worker is free
# (a task woken by a freed slot sat behind a merge), and its claim transaction costs next to nothing
# against such work. Hot-path kinds are claimed a whole batch at a time (`hotpath.BATCH`).
CLAIM_BATCH = 1
# The queue reason of a reconcile put off because its forge was busy.
FORGE_BUSY_REASON = "forge busy"
# Runs the resync sweep enqueues per write transaction: each holds the write lock for milliseconds.
RESYNC_CHUNK = 250
# How long a step that failed for a full disk waits before it is tried again.
DISK_FULL_RETRY_S = 5.0
# Runs put off for a busy forge by this process, whose waiting note goes once the forge answers.
_forge_waiting: set[tuple[str, int]] = set()
# How long a reconcile cut short by a busy or unreachable database waits before it is tried again.
DATABASE_BUSY_DELAY_S = 1.0


# Actions whose success makes the run's next step ready at once (a provisioned worktree: the agent can start).
# The worker still holding the item looks again right away rather than leaving that to a pass through the queue.
# The action's own follow-up is then only a backstop (see the repo handler's provisioning).
_CHAINED = frozenset({"provision"})


def reconcile_one(ctx: ControlContext, item: ClaimedItem) -> Outcome:
    """Run one item through snapshot → decide → execute and log the decision (and trace it, when traced)."""
    with tracing.span("reconcile", {"optio.run.kind": item.kind, "optio.run.id": item.run_id}) as span:
        outcome, action = _reconcile(ctx, item)
        if outcome.status == "applied" and action in _CHAINED:
            outcome, _ = _reconcile(ctx, item)
        span.set_attribute("optio.outcome", outcome.status)
        return outcome


def _reconcile(ctx: ControlContext, item: ClaimedItem) -> tuple[Outcome, str | None]:
    """The outcome, and the name of the action decided (None when it got no further than the snapshot)."""
    handler = ctx.handlers.get(item.kind)
    if handler is None:
        log.error("decision", kind=item.kind, id=item.run_id, action="none", reason="no handler", outcome="error")
        return Outcome("error", "no handler"), None
    now = utcnow()
    try:
        with ctx.db.read() as session:
            loaded = handler.build_snapshot(ctx, session, item.run_id, item.workspace_id, now)
    except ForgeBusy as busy:
        return defer_for_forge(ctx, item, busy), None
    except DatabaseUnavailable:
        raise  # not the run's fault: the worker loop defers it (see _finish)
    except Exception as exc:
        log.exception("decision", kind=item.kind, id=item.run_id, action="defer_with_backoff",
                      reason=f"snapshot failed: {exc}", outcome="deferred")
        with ctx.db.write() as session:
            queue.enqueue(session, item.kind, item.run_id, item.workspace_id, delay_s=snapshot_error_delay(),
                          reason="snapshot failed")
        return Outcome("deferred"), None
    if loaded is None:
        return Outcome("applied", "run gone"), None
    if (item.kind, item.run_id) in _forge_waiting or item.reason == FORGE_BUSY_REASON:
        # The forge answered again: the run no longer shows it waits for it.
        with ctx.db.write() as session:
            forge_hooks.clear_forge_wait(session, item.kind, item.run_id)
        _forge_waiting.discard((item.kind, item.run_id))
    action = handler.decide(loaded.snapshot)
    try:
        outcome = executor.apply(ctx, handler, loaded, action, now)
    except ForgeBusy as busy:
        return defer_for_forge(ctx, item, busy, action=action.name), action.name
    except DatabaseUnavailable:
        raise  # never counted as an executor error: the run would be given up for the database's outage
    except Exception as exc:
        if is_disk_full(exc):
            return defer_for_disk(ctx, item, action.name, exc), action.name
        error = ctx.redact(f"{type(exc).__name__}: {exc}", item.workspace_id)
        outcome = Outcome("error", error)
        log.exception("executor_error", kind=item.kind, id=item.run_id, action=action.name)
        # Only recorded here: the decision sees the count in its next snapshot, backs off, and gives the
        # run up once the same failure repeated too often (optio.domain.executor_errors).
        with ctx.db.write() as session:
            runs.record_executor_error(session, item.kind, item.run_id, action.name, error, now=utcnow())
            queue.enqueue(session, item.kind, item.run_id, item.workspace_id, reason="executor error")
    else:
        run = loaded.run
        if outcome.status == "applied" and run.executor_error_count and run.executor_error_action == action.name:
            with ctx.db.write() as session:
                runs.clear_executor_error(session, item.kind, item.run_id, action.name, run.executor_error_count)
    to = target_state(action)
    metrics.DECISIONS.labels(item.kind, action.name, outcome.status).inc()
    log.info(
        "decision", kind=item.kind, id=item.run_id, action=action.name, **{"from": loaded.run.state},
        to=to if to is not None else loaded.run.state, reason=action.reason, outcome=outcome.status,
        detail=outcome.detail or None,
    )
    return outcome, action.name


def release(ctx: ControlContext, items: list[ClaimedItem], stop: threading.Event | None = None) -> None:
    """Put items a worker could not finish back in the queue, ready again in a moment (their claim released)."""
    _finish(ctx, Done(items, [(item, 1.0, "worker error") for item in items]), stop)


def defer_for_disk(ctx: ControlContext, item: ClaimedItem, action: str, exc: Exception) -> Outcome:
    """The disk is full: try again later, counting nothing against the run (space returning is the operator's).

    If even the enqueue cannot be written, the item's claim lease brings it back.
    """
    log.warning("decision", kind=item.kind, id=item.run_id, action=action, reason=f"disk full: {exc}",
                outcome="deferred")
    with ctx.db.write() as session:
        queue.enqueue(session, item.kind, item.run_id, item.workspace_id, delay_s=DISK_FULL_RETRY_S,
                      reason="disk full")
    return Outcome("deferred", "disk full")


def defer_for_forge(ctx: ControlContext, item: ClaimedItem, busy: ForgeBusy, *, action: str = "snapshot") -> Outcome:
    """The forge said "not now" (rate limit, 5xx): look again when it said to, spending no attempt of the run.

    The run shows why it waits (its note and a timeline event), never an error or a failure.
    """
    delay = max(0.05, busy.retry_after_s)
    metrics.FORGE_WAITS.inc()
    _forge_waiting.add((item.kind, item.run_id))
    with ctx.db.write() as session:
        queue.enqueue(session, item.kind, item.run_id, item.workspace_id, delay_s=delay, reason=FORGE_BUSY_REASON)
        forge_hooks.note_forge_wait(session, item.kind, item.run_id, item.workspace_id,
                                    f"{busy.reason} (retrying in {delay:.0f}s)")
    log.info("decision", kind=item.kind, id=item.run_id, action=action, reason=f"forge busy: {busy.reason}",
             outcome="deferred", retry_after_s=round(delay, 1))
    return Outcome("deferred", busy.reason)


@dataclass(frozen=True)
class Done:
    """Reconciled items still to ack, and those of them to ask again for (after a delay, for a reason)."""

    items: list[ClaimedItem]
    deferred: list[tuple[ClaimedItem, float, str]]

    def write(self, session: Session) -> None:
        for item, delay, reason in self.deferred:
            queue.enqueue(session, item.kind, item.run_id, item.workspace_id, delay_s=delay, reason=reason)
        queue.ack(session, self.items)


def reconcile_items(ctx: ControlContext, items: list[ClaimedItem], *, stop: threading.Event | None = None,
                    ack: bool = True) -> Done | None:
    """Reconcile a claimed batch: job runs through the batched hot path, the rest (and what it leaves) one by one.

    The hot path acks what it applied in its own transaction; the others are acked once all are done, or,
    with ``ack=False``, returned for the caller to ack in the transaction that claims its next items.
    """
    hot = [i for i in items if i.kind in hotpath.KINDS and not _waits_for_forge(i)]
    left = {i.id for i in items} - {i.id for i in hot}
    if hot:
        left |= {i.id for i in hotpath.reconcile_batch(ctx, hot)}
    rest = [i for i in items if i.id in left]
    deferred: list[tuple[ClaimedItem, float, str]] = []
    for item in rest:
        try:
            reconcile_one(ctx, item)
        except DatabaseUnavailable as exc:
            log.warning("decision", kind=item.kind, id=item.run_id, action="defer",
                        reason=exc.reason, outcome="deferred")
            deferred.append((item, DATABASE_BUSY_DELAY_S, "database busy"))
        except Exception:
            log.exception("worker_error", kind=item.kind, id=item.run_id)
            deferred.append((item, snapshot_error_delay(), "worker error"))
    if not rest:
        return None
    if not ack:
        return Done(rest, deferred)
    _finish(ctx, Done(rest, deferred), stop)
    return None


def _finish(ctx: ControlContext, done: Done, stop: threading.Event | None) -> None:
    """Ack `done`, asking again (after a delay, for a reason) for its deferred items; retried until the
    database takes it.

    An item left claimed would never be claimed again: this replica's claims are extended while it lives.
    """
    wait = 0.5
    while True:
        try:
            with ctx.db.write() as session:
                done.write(session)
            return
        except DatabaseUnavailable as exc:
            if stop is not None and stop.is_set():
                return  # stopping: the claims run out after one lease and another worker takes them
            log.warning("ack_waits_for_database", reason=exc.reason)
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)
            wait = min(wait * 2, 5.0)


def _waits_for_forge(item: ClaimedItem) -> bool:
    return (item.kind, item.run_id) in _forge_waiting or item.reason == FORGE_BUSY_REASON


class WorkerPool:
    """Reconcile workers, plus the sweeps that run in one replica at a time (each behind its lease)."""

    def __init__(self, ctx: ControlContext, replica: Replica | None = None) -> None:
        self.ctx = ctx
        self.replica = replica or Replica(ctx.db, lease_s=ctx.settings.replica_lease_s, replica_id=ctx.replica_id)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._id = self.replica.id

    def start(self) -> None:
        for name in (RESYNC, PR_WATCHER, TRIGGER_SCHEDULER):
            self.replica.want(name)
        for i in range(self.ctx.settings.workers):
            t = threading.Thread(target=self._loop, name=f"optio-worker-{i}", daemon=True, args=(f"{self._id}-{i}",))
            t.start()
            self._threads.append(t)
        for target, name in ((self._resync_loop, "optio-resync"), (self._watch_loop, "optio-pr-watcher"),
                             (self._schedule_loop, "optio-scheduler"), (self._adopt_loop, "optio-adopter"),
                             (self._claims_loop, "optio-claims")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.ctx.wake.notify()
        for t in self._threads:
            t.join(timeout)

    def _loop(self, worker: str) -> None:
        lease = self.ctx.settings.queue_lease_s
        # Items this worker failed on mid-batch: left claimed, the claims loop would extend them forever.
        unreleased: list[ClaimedItem] = []
        # Items reconciled and not yet acked: acked in the transaction that claims the next ones (one write
        # transaction per item instead of two), kept until one commits.
        done: Done | None = None
        while not self._stop.is_set():
            items: list[ClaimedItem] = []
            try:
                if unreleased:
                    release(self.ctx, unreleased, self._stop)
                    unreleased = []
                with self.ctx.db.write() as session:
                    if done is not None:
                        done.write(session)
                    items = queue.claim(session, worker, lease_s=lease, limit=CLAIM_BATCH,
                                        batch_kinds=hotpath.KINDS, batch_limit=hotpath.BATCH)
                done = None
                if not items:
                    with self.ctx.db.read() as session:
                        wait = queue.next_ready_in(session)
                    self.ctx.wake.wait(1.0 if wait is None else min(1.0, max(0.01, wait)))
                    continue
                done = reconcile_items(self.ctx, items, stop=self._stop, ack=False)
            except DatabaseUnavailable as exc:
                log.warning("worker_waits_for_database", worker=worker, reason=exc.reason)
                unreleased += items
                self._stop.wait(0.5)
            except Exception:
                log.exception("worker_error", worker=worker)
                unreleased += items
                time.sleep(0.5)
        if done is not None:
            _finish(self.ctx, done, self._stop)

    def _resync_loop(self) -> None:
        while not self._stop.wait(self.ctx.settings.resync_interval_s):
            try:
                with self.replica.sweep(RESYNC) as mine:
                    if mine:
                        resync(self.ctx, still_mine=lambda: self.replica.holds(RESYNC))
            except Exception:
                log.exception("resync_error")

    def _schedule_loop(self) -> None:
        """Fire due schedules: at once (fires missed while the server was down), then every tick."""
        while not self._stop.is_set():
            try:
                with self.replica.sweep(TRIGGER_SCHEDULER) as mine:
                    if mine and triggers.tick(self.ctx.db, utcnow()):
                        self.ctx.wake.notify()
            except Exception:
                log.exception("schedule_error")
            self._stop.wait(self.ctx.settings.trigger_tick_s)

    def _watch_loop(self) -> None:
        """The PR watcher: a poll behind the forge's own events (catches bases moved outside Optio)."""
        while not self._stop.wait(self.ctx.settings.watch_interval_s):
            try:
                with self.replica.sweep(PR_WATCHER) as mine:
                    if mine:
                        for forge in self.ctx.forges.all():
                            forge.poll_open_prs()
            except Exception:
                log.exception("pr_watch_error")

    def _claims_loop(self) -> None:
        """Keep this replica's claims on queue items it is still working on (a third of the queue lease)."""
        lease = self.ctx.settings.queue_lease_s
        while not self._stop.wait(lease / 3):
            try:
                with self.ctx.db.write() as session:
                    queue.extend_claims(session, f"{self._id}-", lease_s=lease)
            except Exception:
                log.exception("claims_error")

    def _adopt_loop(self) -> None:
        """Adopt the agent processes of replicas that died (their lease ran out), every half lease period."""
        while not self._stop.wait(self.ctx.settings.replica_lease_s / 2):
            try:
                processes.adopt_orphans(self.ctx, self.replica.live_replicas())
            except Exception:
                log.exception("adopt_error")


def resync(ctx: ControlContext, *, still_mine: Callable[[], bool] | None = None, chunk: int = RESYNC_CHUNK) -> int:
    """Enqueue every non-terminal run not already queued: the safety net behind event-driven enqueues.

    Each run table is walked by id in chunks of `chunk`: a chunk's ids are read without the write lock, then
    one short write transaction enqueues them in one statement. Workers and the API write between chunks, so
    the sweep never holds the write lock for long whatever the number of runs. The sweep stops early once
    `still_mine` says this replica no longer holds the sweep's lease. Returns how many runs it enqueued.
    """
    count = 0
    for kind, handler in ctx.handlers.items():
        after = 0
        while True:
            if still_mine is not None and not still_mine():
                log.info("resync_stopped", reason="lease lost", enqueued=count)
                return count
            with ctx.db.read() as session:
                ids = resync_store.due_ids(session, kind, handler.terminal, after=after, limit=chunk)
            if not ids:
                break
            with ctx.db.write() as session:
                count += resync_store.enqueue_due(session, kind, handler.terminal, ids, now=utcnow())
            if len(ids) < chunk:
                break
            after = ids[-1]
    if count:
        log.info("resync", enqueued=count)
    return count
