"""Fixed-window hit counters in the database, so a limit holds across every replica (and in SQLite alike).

One upsert per hit adds one to (key, window) and returns the new count; rows of windows that ended are
deleted now and then by whoever counts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from optio.store.models import RateCounter


def hit(session: Session, key: str, window: int, *, expires_at: datetime) -> int:
    """Count one hit of `key` in `window`; the window's count including this hit."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(RateCounter).values(key=key, window=window, hits=1, expires_at=expires_at)
    stmt = stmt.on_conflict_do_update(index_elements=["key", "window"], set_={"hits": RateCounter.hits + 1})
    session.execute(stmt)
    return int(session.scalar(select(RateCounter.hits).where(RateCounter.key == key, RateCounter.window == window))
               or 0)


def purge(session: Session, now: datetime) -> None:
    session.execute(delete(RateCounter).where(RateCounter.expires_at < now).execution_options(
        synchronize_session=False))
