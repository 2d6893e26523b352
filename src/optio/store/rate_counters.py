"""Hit counters in the database, so a limit holds across every replica (and in SQLite alike).

A key's window opens at its first hit and lasts the window's length; one upsert per hit adds one to it, or,
when the window has ended, opens a new one with this hit, and returns the count and when the window ends.
Counters of windows that ended are deleted now and then by whoever counts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from optio.store.models import RateCounter


def hit(session: Session, key: str, *, now: datetime, window_s: float) -> tuple[int, datetime]:
    """Count one hit of `key`: (hits in its current window including this one, when that window ends)."""
    ends = now + timedelta(seconds=window_s)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(RateCounter).values(key=key, hits=1, expires_at=ends)
    ended = RateCounter.expires_at <= now
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={
        "hits": case((ended, 1), else_=RateCounter.hits + 1),
        "expires_at": case((ended, literal(ends, RateCounter.expires_at.type)), else_=RateCounter.expires_at),
    })
    session.execute(stmt)
    row = session.execute(select(RateCounter.hits, RateCounter.expires_at).where(RateCounter.key == key)).one()
    return int(row[0]), row[1]


def purge(session: Session, now: datetime) -> None:
    session.execute(delete(RateCounter).where(RateCounter.expires_at < now).execution_options(
        synchronize_session=False))
