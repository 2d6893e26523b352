"""Run logs: dense per-run sequence numbers so readers can resume with `after=SEQ`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from optio.store.models import RunLog
from optio.store.types import utcnow


def last_seq(session: Session, kind: str, run_id: int) -> int:
    return session.scalar(
        select(func.max(RunLog.seq)).where(RunLog.run_kind == kind, RunLog.run_id == run_id)
    ) or 0


def append(
    session: Session,
    *,
    workspace_id: int,
    kind: str,
    run_id: int,
    attempt: int,
    entries: list[tuple[str, str]],
    now: datetime | None = None,
) -> int:
    """Append (stream, text) entries after the current last seq; returns the new last seq."""
    seq = last_seq(session, kind, run_id)
    now = now or utcnow()
    rows = []
    for stream, line in entries:
        seq += 1
        rows.append(
            {
                "workspace_id": workspace_id,
                "run_kind": kind,
                "run_id": run_id,
                "seq": seq,
                "attempt": attempt,
                "stream": stream,
                "text": line,
                "created_at": now,
            }
        )
    if rows:
        session.execute(RunLog.__table__.insert(), rows)
    return seq


def read(
    session: Session, kind: str, run_id: int, workspace_id: int, *, after: int = 0, limit: int = 1000
) -> list[RunLog]:
    return list(
        session.scalars(
            select(RunLog)
            .where(
                RunLog.run_kind == kind,
                RunLog.run_id == run_id,
                RunLog.workspace_id == workspace_id,
                RunLog.seq > after,
            )
            .order_by(RunLog.seq)
            .limit(limit)
        )
    )
