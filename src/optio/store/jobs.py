"""Jobs and their runs as the API reads and creates them (control reads and writes runs through `store.runs`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from optio.errors import Conflict, NotFound
from optio.store import queue
from optio.store.db import Database
from optio.store.models import Job, JobRun
from optio.store.named import find_by_ref, insert_unique
from optio.store.runs import record_event
from optio.store.types import utcnow


def insert_job(db: Database, workspace_id: int, fields: dict[str, Any]) -> Job:
    """A new job; a name already used in the workspace is a 409."""
    return insert_unique(db, Job(workspace_id=workspace_id, **fields), "job")


def find_job(session: Session, workspace_id: int, ref: str | int) -> Job:
    return find_by_ref(session, Job, workspace_id, ref, "job")


def list_jobs(session: Session, workspace_id: int) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.workspace_id == workspace_id).order_by(Job.id)))


def job_name(session: Session, job_id: int) -> str:
    """The job's name, or "" if it is gone."""
    job = session.get(Job, job_id)
    return job.name if job else ""


def insert_run(session: Session, workspace_id: int, job: Job, params: dict[str, object], prompt: str, *,
               created_by: int | None) -> JobRun:
    """A queued run with its `created` event and its reconcile enqueue, in the caller's transaction."""
    run = JobRun(workspace_id=workspace_id, job_id=job.id, params=params, prompt=prompt, state="queued",
                 created_at=utcnow(), created_by=created_by)
    session.add(run)
    session.flush()
    record_event(session, workspace_id=workspace_id, kind="job_run", run_id=run.id, event="created",
                 from_state=None, to_state="queued", reason=f"run of job {job.name!r} requested")
    queue.enqueue(session, "job_run", run.id, workspace_id, reason="created")
    return run


def get_run(session: Session, workspace_id: int, run_id: int) -> JobRun:
    run = session.scalar(select(JobRun).where(JobRun.id == run_id, JobRun.workspace_id == workspace_id))
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def list_runs(session: Session, workspace_id: int, *, job: str | None, state: str | None, limit: int,
              before: int | None) -> list[tuple[JobRun, str]]:
    """Up to `limit` runs with their job's name, newest first, with ids below `before`."""
    q = (
        select(JobRun, Job.name)
        .join(Job, Job.id == JobRun.job_id)
        .where(JobRun.workspace_id == workspace_id)
        .order_by(JobRun.id.desc())
        .limit(limit)
    )
    if job is not None:
        q = q.where(Job.id == int(job)) if job.isascii() and job.isdigit() else q.where(Job.name == job)
    if state is not None:
        q = q.where(JobRun.state == state)
    if before is not None:
        q = q.where(JobRun.id < before)
    return [(r[0], r[1]) for r in session.execute(q)]


def active_run_count(session: Session, job_id: int, terminal: frozenset[str]) -> int:
    return len(list(session.scalars(select(JobRun.id).where(JobRun.job_id == job_id, JobRun.state.not_in(terminal)))))


def update_job(session: Session, job: Job, fields: dict[str, Any]) -> Job:
    """Change a job's definition in place; a name already used in the workspace is a 409."""
    if "name" in fields and fields["name"] != job.name:
        clash = session.scalar(select(Job.id).where(Job.workspace_id == job.workspace_id, Job.name == fields["name"]))
        if clash is not None:
            raise Conflict(f"job {fields['name']!r} already exists", field="name")
    for key, value in fields.items():
        setattr(job, key, value)
    session.flush()
    return job


def delete_job(session: Session, job: Job) -> None:
    """The job and, by cascade, its finished runs."""
    session.delete(job)
