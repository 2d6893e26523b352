"""The durable reconcile queue (a table), deduplicated by (kind, run_id).

`enqueue` must be called inside the same transaction as the change that makes a reconcile necessary;
that is what makes events impossible to lose. Claiming takes a lease, so a worker that dies mid-item
only delays it until the lease runs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Integer, Table, bindparam, delete, event, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

from optio.store import notify
from optio.store.models import ReconcileItem
from optio.store.types import utcnow

# How many of a transaction's enqueues come due at once (or within WAKE_WITHIN_S): the workers it wakes.
ENQUEUED_FLAG = "optio_enqueued"
# An enqueue due this soon wakes a worker, which then waits out the rest; a later one is found by the idle
# workers' own looks (at least once a second).
WAKE_WITHIN_S = 1.0
# How far ahead of the queue's other due items an enqueue with ``first`` goes.
FIRST_IN_LINE_S = 2.0
_FIRST = timedelta(seconds=FIRST_IN_LINE_S)
_PENDING = "optio_pending_enqueues"


@dataclass(frozen=True)
class ClaimedItem:
    id: int
    kind: str
    run_id: int
    workspace_id: int
    generation: int
    reason: str


def enqueue(
    session: Session,
    kind: str,
    run_id: int,
    workspace_id: int,
    *,
    delay_s: float = 0.0,
    reason: str = "",
    now: datetime | None = None,
    first: bool = False,
) -> None:
    """Ask for a reconcile of (kind, run_id) no earlier than now + delay_s.

    ``first`` puts it ahead of the items that came due in the last ``FIRST_IN_LINE_S`` (claims take the
    earliest ``not_before`` first): for a look that hands over something scarce, such as a repo's slot that
    a task just freed, which is otherwise idle until the queue's backlog of routine looks is worked off.

    An existing entry keeps the earlier of the two times and its generation is bumped, so a worker
    currently holding it will not delete it when done.

    The row is written when the transaction commits (or before the queue is next read in it), together with
    the transaction's other enqueues in (kind, run_id) order: transactions that enqueue several runs then
    lock their rows in one order, and never deadlock on each other on PostgreSQL.
    """
    now = now or utcnow()
    not_before = now - _FIRST if first else now + timedelta(seconds=max(0.0, delay_s))
    values = {
        "kind": kind,
        "run_id": run_id,
        "workspace_id": workspace_id,
        "generation": 1,
        "not_before": not_before,
        "reason": reason[:200],
        "enqueued_at": now,
    }
    session.info.setdefault(_PENDING, []).append(values)
    if first or delay_s < WAKE_WITHIN_S:
        session.info[ENQUEUED_FLAG] = session.info.get(ENQUEUED_FLAG, 0) + 1
    notify.notify_in(session)  # other replicas' workers wake when this commits


@event.listens_for(Session, "before_commit")
def _write_enqueued(session: Session) -> None:
    flush_enqueued(session)


def flush_enqueued(session: Session) -> None:
    """Write the transaction's pending enqueues, in (kind, run_id) order.

    This runs at commit, while the transaction holds the write lock, so it is one prepared upsert run for all of
    them (executemany): building and compiling a statement per enqueue kept every other writer waiting.
    """
    pending: list[dict[str, object]] | None = session.info.pop(_PENDING, None)
    if not pending:
        return
    rows = sorted(pending, key=lambda v: (str(v["kind"]), int(str(v["run_id"]))))
    session.execute(_upsert(session.get_bind().dialect.name), rows)


_UPSERTS: dict[str, Executable] = {}


def _upsert(dialect: str) -> Executable:
    """The enqueue upsert of `dialect`: a new row, or the earlier of both times and a bumped generation."""
    stmt = _UPSERTS.get(dialect)
    if stmt is None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # On the table, not the mapped class: Core's executemany, without the ORM's bulk-insert bookkeeping.
        base = insert(_TABLE).values({name: bindparam(name) for name in _ENQUEUE_COLUMNS})
        excluded = base.excluded
        earlier = func.min if dialect == "sqlite" else func.least
        stmt = _UPSERTS[dialect] = base.on_conflict_do_update(
            index_elements=["kind", "run_id"],
            set_={
                "generation": _Q.generation + 1,
                "not_before": earlier(_Q.not_before, excluded.not_before),
                "reason": excluded.reason,
            },
        )
    return stmt


_ENQUEUE_COLUMNS = ("kind", "run_id", "workspace_id", "generation", "not_before", "reason", "enqueued_at")


_TABLE = cast(Table, ReconcileItem.__table__)
_Q = _TABLE.c
_CLAIM_COLUMNS = (_Q.id, _Q.kind, _Q.run_id, _Q.workspace_id, _Q.generation, _Q.reason)


def claim(
    session: Session,
    worker: str,
    *,
    lease_s: float,
    limit: int = 1,
    now: datetime | None = None,
    batch_kinds: frozenset[str] = frozenset(),
    batch_limit: int = 0,
) -> list[ClaimedItem]:
    """Take up to `limit` of the oldest ready items under a lease (FOR UPDATE SKIP LOCKED on PostgreSQL).

    With `batch_kinds`, items of those kinds (ones the worker reconciles a whole batch of at once) are taken
    up to `batch_limit` besides: a deep queue of them then costs a handful of transactions per batch, while a
    slow item of another kind still holds at most `limit - 1` others behind it.
    """
    flush_enqueued(session)
    now = now or utcnow()
    scan = max(limit, batch_limit if batch_kinds else 0)
    query = _CLAIMABLE_FOR_UPDATE if session.get_bind().dialect.name == "postgresql" else _CLAIMABLE
    items: list[ClaimedItem] = []
    others = 0
    for row in session.execute(query, {"now": now, "scan": scan}):
        item = ClaimedItem(*row)
        if item.kind in batch_kinds:
            items.append(item)
        elif others < limit:
            others += 1
            items.append(item)
    if not items:
        return []
    # Pushing not_before to the lease end makes a crashed worker's items ready again when the lease
    # runs out, and lets an enqueue made while one is processed pull not_before earlier via min().
    session.execute(_TAKE, {"ids": [i.id for i in items], "lease_end": now + timedelta(seconds=lease_s),
                            "worker": worker})
    return items


# The queue's statements are built once: each worker runs them in every claim transaction, with the write
# lock held, and building and keying a statement cost more than running it.
_CLAIMABLE = (
    select(*_CLAIM_COLUMNS)
    .where(_Q.not_before <= bindparam("now"),
           or_(_Q.claimed_until.is_(None), _Q.claimed_until < bindparam("now")))
    .order_by(_Q.not_before, _Q.id)
    .limit(bindparam("scan", type_=Integer))
)
_CLAIMABLE_FOR_UPDATE = _CLAIMABLE.with_for_update(skip_locked=True)
_TAKE = (
    update(_TABLE).where(_Q.id.in_(bindparam("ids", expanding=True)))
    .values(claimed_until=bindparam("lease_end"), not_before=bindparam("lease_end"), claimed_by=bindparam("worker"))
)
_RELEASE = (
    update(_TABLE).where(_Q.id.in_(bindparam("ids", expanding=True))).values(claimed_until=None, claimed_by=None)
)
_LOCK_IN_ORDER = (
    select(_Q.id).where(_Q.id.in_(bindparam("ids", expanding=True))).order_by(_Q.kind, _Q.run_id).with_for_update()
)
_EARLIEST = select(_Q.not_before).where(_Q.claimed_until.is_(None)).order_by(_Q.not_before).limit(1)


_DELETE_DONE = delete(_TABLE).where(
    _Q.id == bindparam("item_id"), _Q.generation == bindparam("item_generation")
)


def ack(session: Session, items: list[ClaimedItem]) -> None:
    """Done with items: delete each unless it was enqueued again meanwhile, else release its lease.

    The transaction's own pending enqueues are written first, after the items are locked: a batch whose
    follow-ups are enqueues of its own items then takes their locks in one (kind, run_id) order.
    """
    if not items:
        return
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        # Lock them in (kind, run_id) order first, the order enqueues take: no deadlock with a transaction
        # enqueueing several of them.
        session.execute(_LOCK_IN_ORDER, {"ids": [i.id for i in items]})
    flush_enqueued(session)
    # One statement run for every item (executemany): no per-batch compile of an IN list of pairs.
    params = [{"item_id": i.id, "item_generation": i.generation} for i in items]
    deleted = cast("CursorResult[Any]", session.execute(_DELETE_DONE, params[0] if len(params) == 1 else params))
    if (len(params) == 1 or dialect.supports_sane_multi_rowcount) and deleted.rowcount == len(params):
        return  # every one was deleted: none is left to release
    # Whatever is left of these was enqueued again while being processed: it keeps its new not_before.
    session.execute(_RELEASE, {"ids": [i.id for i in items]})


def next_ready_in(session: Session, now: datetime | None = None) -> float | None:
    """Seconds until the earliest item becomes ready (0 if one is ready), None if the queue is empty."""
    flush_enqueued(session)
    now = now or utcnow()
    earliest = session.scalar(_EARLIEST)
    if earliest is None:
        return None
    return max(0.0, (earliest - now).total_seconds())


def depth(session: Session) -> int:
    flush_enqueued(session)
    return session.scalar(select(func.count()).select_from(ReconcileItem)) or 0


def extend_claims(session: Session, worker_prefix: str, *, lease_s: float, now: datetime | None = None) -> int:
    """Move the lease of every item claimed by a worker whose name starts with `worker_prefix`: its workers still run.

    A reconcile that takes longer than a lease is not claimed a second time while its replica lives; once
    the replica dies, its claims run out after one lease.
    """
    now = now or utcnow()
    query = (select(ReconcileItem.id)
             .where(ReconcileItem.claimed_by.startswith(worker_prefix, autoescape=True),
                    ReconcileItem.claimed_until.is_not(None))
             .order_by(ReconcileItem.kind, ReconcileItem.run_id))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)  # one being acked right now needs no longer lease
    ids = list(session.scalars(query))
    if ids:
        session.execute(update(ReconcileItem).where(ReconcileItem.id.in_(ids))
                        .values(claimed_until=now + timedelta(seconds=lease_s))
                        .execution_options(synchronize_session=False))
    return len(ids)
