"""The resync sweep's reads and writes: every non-terminal run not yet in the reconcile queue, enqueued in bulk.

The sweep walks a run table by id in chunks. A chunk's ids are read with no write lock (`due_ids`); then one
short write transaction enqueues them with a single INSERT ... SELECT (`enqueue_due`) that re-checks each run's
state and skips runs already queued (ON CONFLICT DO NOTHING on (kind, run_id)). A queued run keeps its own time,
generation and reason: it is reconciled anyway, and a backoff it waits out is not cut short by the sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from optio.store import notify
from optio.store.models import ReconcileItem
from optio.store.queue import ENQUEUED_FLAG
from optio.store.runs import model_for
from optio.store.types import UTCDateTime

REASON = "resync"


def due_ids(session: Session, kind: str, terminal: frozenset[str], *, after: int, limit: int) -> list[int]:
    """Up to `limit` ids above `after`, in id order, of the kind's non-terminal runs that have no queue item."""
    model = model_for(kind)
    queued = exists().where(ReconcileItem.kind == kind, ReconcileItem.run_id == model.id)
    query = (select(model.id).where(model.id > after, model.state.not_in(terminal), ~queued)
             .order_by(model.id).limit(limit))
    return list(session.scalars(query))


def enqueue_due(session: Session, kind: str, terminal: frozenset[str], ids: Sequence[int], *, now: datetime) -> int:
    """Enqueue the runs among `ids` still non-terminal and not queued, ready now; returns how many were enqueued.

    One statement, in run id order (the order enqueues lock queue rows in, so no deadlock on PostgreSQL). Each
    item carries its run's workspace, as `queue.enqueue` records it.
    """
    if not ids:
        return 0
    model = model_for(kind)
    when = literal(now, UTCDateTime())
    rows = (select(literal(kind), model.id, model.workspace_id, literal(1), when, literal(REASON), when)
            .where(model.id.in_(list(ids)), model.state.not_in(terminal))
            .order_by(model.id))
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (insert(ReconcileItem)
            .from_select(["kind", "run_id", "workspace_id", "generation", "not_before", "reason", "enqueued_at"], rows)
            .on_conflict_do_nothing(index_elements=["kind", "run_id"])
            .returning(ReconcileItem.id))  # the rows inserted (a DBAPI's rowcount of INSERT ... SELECT may be -1)
    added = len(session.execute(stmt).all())
    if added:
        # Wakes as many of this process's idle workers when the transaction commits.
        session.info[ENQUEUED_FLAG] = session.info.get(ENQUEUED_FLAG, 0) + added
        notify.notify_in(session)  # and other replicas'
    return added
