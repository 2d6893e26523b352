"""Run logs: dense per-run sequence numbers so readers can resume with `after=SEQ`.

One sequence per run across all its streams, given in the order the lines reach Optio, so stdout,
stderr and events read back in a single order. A run stores at most OPTIO_MAX_RUN_LOG_BYTES of output;
past that its output is dropped, with one marker line saying so.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from optio.store.models import RunLog
from optio.store.types import utcnow


def last_seq(session: Session, kind: str, run_id: int) -> int:
    return session.scalar(
        select(func.max(RunLog.seq)).where(RunLog.run_kind == kind, RunLog.run_id == run_id)
    ) or 0


MARKER_STREAM = "optio"


def within_cap(entries: list[tuple[str, str]], *, stored_bytes: int, cap: int,
               dropping: bool) -> tuple[list[tuple[str, str]], int, int]:
    """The entries that still fit under `cap`, their size, and the size of the ones that do not.

    Once a run started dropping, everything after is dropped too (a log with holes in it would mislead).
    """
    kept: list[tuple[str, str]] = []
    kept_bytes = dropped_bytes = 0
    for stream, text in entries:
        size = len(text.encode("utf-8", errors="replace")) + 1
        if dropping or stored_bytes + kept_bytes + size > cap:
            dropping = True
            dropped_bytes += size
            continue
        kept.append((stream, text))
        kept_bytes += size
    return kept, kept_bytes, dropped_bytes


def cap_marker(cap: int) -> tuple[str, str]:
    return (MARKER_STREAM, f"optio: this run's output reached the log size cap of {cap} bytes "
                           "(OPTIO_MAX_RUN_LOG_BYTES); the rest of its output is not stored")


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
        session.execute(insert(RunLog), rows)
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


def attempt_lines(session: Session, kind: str, run_id: int, attempt: int, stream: str = "stdout") -> list[str]:
    """The stored lines of one stream of one attempt, in order."""
    return list(session.scalars(
        select(RunLog.text).where(RunLog.run_kind == kind, RunLog.run_id == run_id, RunLog.stream == stream,
                                  RunLog.attempt == attempt)
        .order_by(RunLog.seq)
    ))
