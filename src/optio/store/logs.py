"""Run logs: dense per-run sequence numbers so readers can resume with `after=SEQ`.

One sequence per run across all its streams, given in the order the lines reach Optio, so stdout,
stderr and events read back in a single order. A run stores at most OPTIO_MAX_RUN_LOG_BYTES of output;
past that its output is dropped, with one marker line saying so.

Every append (and every change of a run's state, which can end its log) is noted on its session (`CHANGED`),
so a commit hook (`Database.on_commit`) can wake the readers following those runs the moment it commits,
instead of their polling.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from optio.store.models import RunLog
from optio.store.notify import notify_in
from optio.store.types import utcnow

# session.info key: the (kind, run_id) of the runs whose log (or state) the session's transaction changed.
CHANGED = "optio_logs_changed"
# PostgreSQL channel on which a commit with new log lines wakes the live log readers of every replica.
LOG_CHANNEL = "optio_logs"
# session.info key: the lines the session's transaction appended (`Appended`), handed to this process's live
# readers of those logs when it commits, so they need not read back what was just written.
APPENDED = "optio_logs_appended"
_TABLE = cast(Table, RunLog.__table__)
_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def mark_changed(session: Session, kind: str, run_id: int) -> None:
    """Wake the live readers of the run's log when this transaction commits (see the module docstring)."""
    session.info.setdefault(CHANGED, set()).add((kind, run_id))
    notify_in(session, LOG_CHANNEL)


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
    if not dropping and entries:
        # The usual case, in one encode: the whole batch fits (a line's size counts its newline).
        total = len("\n".join(text for _, text in entries).encode("utf-8", errors="replace")) + 1
        if stored_bytes + total <= cap:
            return list(entries), total, 0
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


class Appended(NamedTuple):
    """Lines one `append` stored: seqs `first_seq` on, in order, all of one attempt and one timestamp."""

    kind: str
    run_id: int
    workspace_id: int
    attempt: int
    first_seq: int
    entries: list[tuple[str, str]]  # (stream, text), as stored
    created_at: datetime  # as read back: UTC


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
    """Append (stream, text) entries after the current last seq; returns the new last seq.

    One executemany of the driver for the whole batch: no ORM object and no per-row parameter processing,
    which cost several times the insert itself. The lines are also noted on the session (`APPENDED`) for the
    commit hooks: only a committed transaction hands them on.
    """
    seq = last_seq(session, kind, run_id)
    if not entries:
        return seq
    connection = session.connection()
    dialect = connection.dialect
    created = _TABLE.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    when = now or utcnow()
    stamp: Any = created(when) if created is not None else when
    mark = _MARKS.get(dialect.paramstyle)
    if mark is None:  # a driver with named parameters only: the plain Core statement, one dict per row
        connection.execute(insert(_TABLE), [
            {"workspace_id": workspace_id, "run_kind": kind, "run_id": run_id, "seq": n, "attempt": attempt,
             "stream": stream, "text": line, "created_at": when}
            for n, (stream, line) in enumerate(entries, start=seq + 1)])
    else:
        # The driver's own executemany with positional tuples: SQLAlchemy's per-row parameter processing
        # cost several times the insert itself; the only typed value (the timestamp) is processed once above.
        columns = ("workspace_id", "run_kind", "run_id", "seq", "attempt", "stream", "text", "created_at")
        sql = f"INSERT INTO {_TABLE.name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
        connection.exec_driver_sql(sql, [(workspace_id, kind, run_id, n, attempt, stream, line, stamp)
                                         for n, (stream, line) in enumerate(entries, start=seq + 1)])
    session.info.setdefault(APPENDED, []).append(
        Appended(kind, run_id, workspace_id, attempt, seq + 1, list(entries), when.astimezone(UTC)))
    seq += len(entries)
    mark_changed(session, kind, run_id)
    return seq


class LogRow(NamedTuple):
    """One stored line as readers get it (the columns of `LogLine`)."""

    seq: int
    attempt: int
    stream: str
    text: str
    created_at: datetime


def read(
    session: Session, kind: str, run_id: int, workspace_id: int, *, after: int = 0, limit: int = 1000
) -> list[LogRow]:
    """The lines after `after`, in order, at most `limit`.

    The driver's own statement: a Core select's per-row result processing (parsing each timestamp above all)
    cost several times the query, and every live log stream reads each line through here. A batch's lines
    share their timestamp (`append` stamps them once), so each distinct one is converted once.
    """
    connection = session.connection()
    dialect = connection.dialect
    mark = _MARKS.get(dialect.paramstyle)
    if mark is None:  # a driver with named parameters only: the plain Core statement
        return [LogRow(*row) for row in session.execute(
            select(RunLog.seq, RunLog.attempt, RunLog.stream, RunLog.text, RunLog.created_at)
            .where(RunLog.run_kind == kind, RunLog.run_id == run_id, RunLog.workspace_id == workspace_id,
                   RunLog.seq > after)
            .order_by(RunLog.seq).limit(limit))]
    sql = (f"SELECT seq, attempt, stream, text, created_at FROM {_TABLE.name} WHERE run_kind = {mark} "
           f"AND run_id = {mark} AND workspace_id = {mark} AND seq > {mark} ORDER BY seq LIMIT {mark}")
    rows = connection.exec_driver_sql(sql, (kind, run_id, workspace_id, after, limit)).all()
    convert = _TABLE.c.created_at.type.dialect_impl(dialect).result_processor(dialect, None)
    stamps = {raw: cast(datetime, convert(raw) if convert is not None else raw) for raw in {row[4] for row in rows}}
    return [LogRow(seq, attempt, stream, text, stamps[raw]) for seq, attempt, stream, text, raw in rows]


def attempt_lines(session: Session, kind: str, run_id: int, attempt: int, stream: str = "stdout") -> list[str]:
    """The stored lines of one stream of one attempt, in order."""
    return list(session.scalars(
        select(RunLog.text).where(RunLog.run_kind == kind, RunLog.run_id == run_id, RunLog.stream == stream,
                                  RunLog.attempt == attempt)
        .order_by(RunLog.seq)
    ))
