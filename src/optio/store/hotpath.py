"""Set-based reads for the reconcile hot path: a whole claimed batch of job runs in one or two Core selects.

The per-item path loads each run with its job as ORM objects, one query (and one transaction) per item;
under a deep queue that, not the decision, is where the time goes. These read plain rows (no identity map,
no attribute instrumentation) for every run of a batch at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from optio.store.models import Job, JobRun

_RUN = JobRun.__table__.c
_JOB = Job.__table__.c


class JobRunRow(NamedTuple):
    """The columns of a job run (and its job) that a decision can read; attribute names match the ORM row's."""

    id: int
    workspace_id: int
    job_id: int
    state: str
    version: int
    control_intent: str | None
    reconcile_backoff_until: datetime | None
    reconcile_attempts: int
    attempts: int
    heartbeat_at: datetime | None
    started_at: datetime | None
    created_at: datetime | None
    error: str | None
    executor_error_action: str | None
    executor_error: str | None
    executor_error_count: int | None
    executor_error_at: datetime | None
    cost_usd: float
    max_retries: int
    budget_usd: float | None
    max_concurrent_runs: int | None


_COLUMNS = (
    _RUN.id, _RUN.workspace_id, _RUN.job_id, _RUN.state, _RUN.version, _RUN.control_intent,
    _RUN.reconcile_backoff_until, _RUN.reconcile_attempts, _RUN.attempts, _RUN.heartbeat_at, _RUN.started_at,
    _RUN.created_at, _RUN.error, _RUN.executor_error_action, _RUN.executor_error, _RUN.executor_error_count,
    _RUN.executor_error_at, _RUN.cost_usd, _JOB.max_retries, _JOB.budget_usd, _JOB.max_concurrent_runs,
)
_LOAD = select(*_COLUMNS).select_from(JobRun.__table__.join(Job.__table__, _JOB.id == _RUN.job_id))
# SQLite's default limit on bound parameters is far above this; PostgreSQL has no practical one.
_CHUNK = 400


def load_job_runs(session: Session, keys: Iterable[tuple[int, int]]) -> dict[int, JobRunRow]:
    """Job runs by id for (run id, workspace id) pairs; a run missing (or in another workspace) is absent."""
    workspace = dict(keys)
    ids = sorted(workspace)
    found: dict[int, JobRunRow] = {}
    for start in range(0, len(ids), _CHUNK):
        for row in session.execute(_LOAD.where(_RUN.id.in_(ids[start : start + _CHUNK]))):
            if workspace[row[0]] == row[1]:  # the queue item's workspace scopes the read, as the per-item load's
                found[row[0]] = JobRunRow._make(row)
    return found


def running_per_job(session: Session, job_ids: Iterable[int]) -> dict[int, int]:
    """How many runs of each job are running (the per-job cap of a queued run's capacity)."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(_RUN.job_id, func.count()).where(_RUN.job_id.in_(ids), _RUN.state == "running").group_by(_RUN.job_id)
    )
    return {int(r[0]): int(r[1]) for r in rows}
