"""What a metrics scrape reads from the database (the counters are kept where things happen)."""

from __future__ import annotations

from optio.observability.metrics import DatabaseFacts
from optio.store import metrics as metric_store
from optio.store.db import Database
from optio.store.types import utcnow


def database_facts(db: Database) -> DatabaseFacts:
    with db.read() as session:
        depth, due, age = metric_store.queue_facts(session, utcnow())
        by_state = metric_store.runs_by_state(session)
    return DatabaseFacts(queue_depth=depth, queue_due=due, oldest_due_age_s=age, runs_by_state=tuple(by_state))
