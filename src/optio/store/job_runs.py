"""Job runs as the control plane reads them: the run with its job, and the counts its capacity needs."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from optio.store.models import Job, JobRun


def load(session: Session, run_id: int, workspace_id: int) -> tuple[JobRun, Job] | None:
    row = session.execute(
        select(JobRun, Job).join(Job, Job.id == JobRun.job_id)
        .where(JobRun.id == run_id, JobRun.workspace_id == workspace_id)
    ).first()
    return None if row is None else (row[0], row[1])


def running_for_job(session: Session, job_id: int, *, except_run: int | None = None) -> int:
    q = select(func.count()).select_from(JobRun).where(JobRun.job_id == job_id, JobRun.state == "running")
    if except_run is not None:
        q = q.where(JobRun.id != except_run)
    return session.scalar(q) or 0


def oldest_queued(session: Session, limit: int) -> list[tuple[int, int]]:
    """(id, workspace id) of the oldest queued runs."""
    rows = session.execute(
        select(JobRun.id, JobRun.workspace_id).where(JobRun.state == "queued").order_by(JobRun.id).limit(limit)
    )
    return [(r[0], r[1]) for r in rows]
