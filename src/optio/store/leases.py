"""Leases: one owner at a time for a named piece of work, shared by every replica through the database.

A lease is taken, or renewed by its holder, with one upsert whose update applies only when the row is the
caller's or has expired; the row read back in the same transaction says who holds it. Both SQLite and
PostgreSQL serialise the upsert on the row, so two replicas can never both come out holding a lease.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from optio.store.models import Lease, SweepRun

# Sweep records kept per sweep name; older ones go as new ones are written.
SWEEP_HISTORY = timedelta(hours=1)


def acquire(session: Session, name: str, owner: str, *, ttl_s: float, now: datetime) -> bool:
    """Take `name` for `owner` until now + ttl_s if it is free, expired or already `owner`'s; True if held."""
    expires = now + timedelta(seconds=ttl_s)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(Lease).values(name=name, owner=owner, acquired_at=now, expires_at=expires)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={"owner": owner, "expires_at": expires, "acquired_at": now},
        where=(Lease.expires_at < now) & (Lease.owner != owner),
    )
    session.execute(stmt)
    # The holder's renewal moves only the expiry (acquired_at says since when it holds it).
    session.execute(update(Lease).where(Lease.name == name, Lease.owner == owner)
                    .values(expires_at=expires).execution_options(synchronize_session=False))
    return session.scalar(select(Lease.owner).where(Lease.name == name)) == owner


def release(session: Session, name: str, owner: str) -> None:
    session.execute(delete(Lease).where(Lease.name == name, Lease.owner == owner))


def holder(session: Session, name: str, *, now: datetime) -> str | None:
    """Who holds `name` now (None when nobody does, or the holder let it expire)."""
    return session.scalar(select(Lease.owner).where(Lease.name == name, Lease.expires_at >= now))


def live_owners(session: Session, prefix: str, *, now: datetime) -> set[str]:
    """The holders of every unexpired lease whose name starts with `prefix`."""
    return set(session.scalars(select(Lease.owner).where(Lease.name.startswith(prefix, autoescape=True),
                                                         Lease.expires_at >= now)))


def expired_names(session: Session, prefix: str, *, now: datetime) -> list[tuple[str, str]]:
    """(name, last owner) of the leases under `prefix` whose holder let them run out."""
    rows = session.execute(select(Lease.name, Lease.owner).where(Lease.name.startswith(prefix, autoescape=True),
                                                                  Lease.expires_at < now))
    return [(r[0], r[1]) for r in rows]


def drop_expired(session: Session, name: str, owner: str, *, now: datetime) -> bool:
    """Remove an expired lease still held by `owner` (the replica that took over its work does)."""
    result = session.execute(delete(Lease).where(Lease.name == name, Lease.owner == owner, Lease.expires_at < now)
                             .execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0))


def sweep_started(session: Session, name: str, owner: str, *, now: datetime) -> int:
    """Record that `owner` starts sweep `name`; also forgets that sweep's records older than an hour."""
    session.execute(delete(SweepRun).where(SweepRun.name == name, SweepRun.started_at < now - SWEEP_HISTORY,
                                           or_(SweepRun.finished_at.is_not(None), SweepRun.owner != owner)))
    row = SweepRun(name=name, owner=owner, started_at=now)
    session.add(row)
    session.flush()
    return row.id


def sweep_finished(session: Session, sweep_id: int, *, now: datetime) -> None:
    session.execute(update(SweepRun).where(SweepRun.id == sweep_id).values(finished_at=now)
                    .execution_options(synchronize_session=False))


def sweep_runs(session: Session, name: str | None = None) -> list[SweepRun]:
    query = select(SweepRun).order_by(SweepRun.started_at)
    if name is not None:
        query = query.where(SweepRun.name == name)
    return list(session.scalars(query))
