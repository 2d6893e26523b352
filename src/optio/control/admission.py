"""Exact concurrency caps: the last check happens inside the transaction that starts a run.

The decision sees capacity in its snapshot, but several workers decide at once, so two of them could each
see one free slot and both start. Re-counting inside the start transaction closes that race: on SQLite
write transactions are serialized already (BEGIN IMMEDIATE); on PostgreSQL an advisory lock serializes the
starts, so the count a start sees includes every start committed before it.
"""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from optio.store.models import JobRun, Repo, RepoTask, ReviewRun

ADMISSION_LOCK_KEY = 0x0F710  # any constant shared by every Optio replica
ACTIVE = {JobRun: ("running",), RepoTask: ("provisioning", "running"), ReviewRun: ("running",)}


def serialize_starts(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADMISSION_LOCK_KEY})


def active_runs(session: Session) -> int:
    total = 0
    for model, states in ACTIVE.items():
        total += session.scalar(select(func.count()).select_from(model).where(model.state.in_(states))) or 0
    return total


def admit_job_run(session: Session, run_id: int, job_id: int, max_global: int, max_job: int | None) -> bool:
    serialize_starts(session)
    if active_runs(session) >= max_global:
        return False
    if max_job is None:
        return True
    running = session.scalar(
        select(func.count()).select_from(JobRun)
        .where(JobRun.job_id == job_id, JobRun.state == "running", JobRun.id != run_id)
    ) or 0
    return running < max_job


def admit_repo_task(session: Session, task_id: int, repo: Repo, max_global: int, max_repo: int) -> bool:
    serialize_starts(session)
    if active_runs(session) >= max_global:
        return False
    in_repo = session.scalar(
        select(func.count()).select_from(RepoTask)
        .where(RepoTask.repo_id == repo.id, RepoTask.state.in_(ACTIVE[RepoTask]), RepoTask.id != task_id)
    ) or 0
    return in_repo < max_repo
