"""Reading runs and asking them to change (control intents), for every run kind."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from optio.errors import Conflict, Invalid, NotFound
from optio.store import jobs as job_store
from optio.store import logs, queue, runs
from optio.store.db import Database
from optio.store.models import JobRun, RunEvent
from optio.store.session import Session

INTENTS = ("cancel", "retry", "resume", "interrupt")


def get_job_run(session: Session, workspace_id: int, run_id: int) -> JobRun:
    return job_store.get_run(session, workspace_id, run_id)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        value = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        raise Invalid("malformed cursor", field="cursor") from None
    if not 0 <= value < 2**62:  # beyond a database integer: would fail in the driver, not here
        raise Invalid("malformed cursor", field="cursor")
    return value


def list_job_runs(
    db: Database, workspace_id: int, *, job: str | None = None, state: str | None = None,
    limit: int = 50, cursor: str | None = None,
) -> tuple[list[tuple[JobRun, str]], str | None]:
    """Newest first, keyset-paginated by id."""
    before = decode_cursor(cursor)
    with db.read() as session:
        rows = job_store.list_runs(session, workspace_id, job=job, state=state, limit=limit + 1, before=before)
    next_cursor = encode_cursor(rows[limit - 1][0].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def set_intent(db: Database, workspace_id: int, kind: str, run_id: int, intent: str,
               allowed_states: dict[str, tuple[str, ...]] | None = None) -> Any:
    """Record a control intent with a CAS write and enqueue the run in the same transaction.

    The backoff is cleared so a person's cancel or retry is acted on now, not after a retry delay.
    """
    if intent not in INTENTS:
        raise Invalid(f"unknown intent {intent!r}", field="intent")
    for _ in range(5):
        with db.write() as session:
            run = runs.get_run(session, kind, run_id, workspace_id)
            if run is None:
                raise NotFound(f"run {run_id} not found")
            if allowed_states is not None and run.state not in allowed_states.get(intent, ()):
                raise Conflict(f"cannot {intent} a run that is {run.state}", field="state")
            if runs.cas_update(session, kind, run_id, run.version,
                               {"control_intent": intent, "reconcile_backoff_until": None}):
                runs.record_event(session, workspace_id=workspace_id, kind=kind, run_id=run_id,
                                  event=f"{intent}_requested", from_state=run.state, to_state=run.state,
                                  reason=f"{intent} requested")
                queue.enqueue(session, kind, run_id, workspace_id, reason=f"{intent} requested")
                return run
    raise Conflict("run is changing too fast; try again")


def queue_depth(db: Database) -> int:
    """How many runs wait for the reconciler (shown by /api/health)."""
    with db.read() as session:
        return queue.depth(session)


def get_job_run_or_404(db: Database, workspace_id: int, run_id: int) -> JobRun:
    with db.read() as session:
        return get_job_run(session, workspace_id, run_id)


def job_run_with_name(db: Database, workspace_id: int, run_id: int) -> tuple[JobRun, str]:
    """The run and its job's name ("" if the job is gone); not found outside the workspace."""
    with db.read() as session:
        run = get_job_run(session, workspace_id, run_id)
        return run, job_store.job_name(session, run.job_id)


@dataclass(frozen=True)
class LogSlice:
    """A page of a run's log, with whether a reader has seen all of it for good."""

    lines: list[logs.LogRow]
    last_seq: int
    state: str
    done: bool


def require_run(session: Session, kind: str, run_id: int, workspace_id: int, noun: str) -> Any:
    """The run of `kind` in the workspace; not found (named by `noun`) otherwise."""
    run = runs.get_run(session, kind, run_id, workspace_id)
    if run is None:
        raise NotFound(f"{noun} {run_id} not found")
    return run


def run_events(db: Database, kind: str, run_id: int, workspace_id: int, noun: str) -> list[RunEvent]:
    with db.read() as session:
        require_run(session, kind, run_id, workspace_id, noun)
        return runs.list_events(session, kind, run_id, workspace_id)


def log_slice(db: Database, kind: str, run_id: int, workspace_id: int, *, noun: str, terminal: frozenset[str],
              after: int, limit: int) -> LogSlice:
    """Lines after `after`, read in one transaction with the run's state, so `done` is never premature."""
    with db.read() as session:
        state = require_run(session, kind, run_id, workspace_id, noun).state
        rows = logs.read(session, kind, run_id, workspace_id, after=after, limit=limit)
        last = rows[-1].seq if rows else after
        done = state in terminal and last >= logs.last_seq(session, kind, run_id)
        return LogSlice(rows, last, state, done)
