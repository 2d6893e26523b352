"""Every kind of task in one newest-first stream, keyset-paged on (created_at, kind rank, id)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select, true
from sqlalchemy.orm import Session

from optio.store.models import Job, JobRun, RepoTask, ReviewRun

JOB_RUN, REPO_TASK, PR_REVIEW = 0, 1, 2  # kind ranks: the newest-first tie-break order within one timestamp
Position = tuple[datetime, int, int]


@dataclass(frozen=True)
class FeedRow:
    """One task in the feed, with its row: a job run's (and its job's name), a review run's or a repo task's."""

    created_at: datetime
    rank: int
    id: int
    run: JobRun | None = None
    job_name: str = ""
    review: ReviewRun | None = None
    task: RepoTask | None = None


def _after(model: Any, rank: int, cursor: Position | None) -> ColumnElement[bool]:
    """Rows strictly after the cursor in (created_at desc, type rank desc, id desc) order."""
    if cursor is None:
        return true()
    when, c_rank, c_id = cursor
    same_ts = model.created_at == when
    tie: ColumnElement[bool]
    if rank < c_rank:
        tie = same_ts
    elif rank == c_rank:
        tie = and_(same_ts, model.id < c_id)
    else:
        tie = false()
    return or_(model.created_at < when, tie)


@dataclass(frozen=True)
class FeedFilter:
    """Narrower feeds for the dashboard: a repo only has tasks, a job only runs; `search` matches titles and job
    names (case-insensitive)."""

    repo_id: int | None = None
    job_id: int | None = None
    agent_type: str | None = None
    search: str | None = None


def newest(session: Session, workspace_id: int, *, ranks: tuple[int, ...], state: str | None,
           position: Position | None, limit: int, only: FeedFilter | None = None) -> list[FeedRow]:
    """Up to `limit` rows of each kind in `ranks` after `position`, merged newest first (the caller cuts)."""
    only = only or FeedFilter()
    rows: list[FeedRow] = []
    if only.repo_id is not None:
        ranks = tuple(r for r in ranks if r != JOB_RUN)
    if only.job_id is not None:
        ranks = tuple(r for r in ranks if r == JOB_RUN)
    pattern = only.search.lower() if only.search else None
    if JOB_RUN in ranks:
        q = (select(JobRun, Job.name).join(Job, Job.id == JobRun.job_id)
             .where(JobRun.workspace_id == workspace_id, _after(JobRun, JOB_RUN, position))
             .order_by(JobRun.created_at.desc(), JobRun.id.desc()).limit(limit))
        if state:
            q = q.where(JobRun.state == state)
        if only.job_id is not None:
            q = q.where(JobRun.job_id == only.job_id)
        if only.agent_type:
            q = q.where(Job.agent_type == only.agent_type)
        if pattern:
            q = q.where(func.lower(Job.name).contains(pattern, autoescape=True))
        rows += [FeedRow(r.created_at, JOB_RUN, r.id, r, name) for r, name in session.execute(q)]
    if REPO_TASK in ranks:
        q2 = (select(RepoTask).where(RepoTask.workspace_id == workspace_id, _after(RepoTask, REPO_TASK, position))
              .order_by(RepoTask.created_at.desc(), RepoTask.id.desc()).limit(limit))
        if state:
            q2 = q2.where(RepoTask.state == state)
        if only.repo_id is not None:
            q2 = q2.where(RepoTask.repo_id == only.repo_id)
        if only.agent_type:
            q2 = q2.where(RepoTask.agent_type == only.agent_type)
        if pattern:
            q2 = q2.where(func.lower(RepoTask.title).contains(pattern, autoescape=True))
        rows += [FeedRow(t.created_at, REPO_TASK, t.id, task=t) for t in session.scalars(q2)]
    if PR_REVIEW in ranks:
        q3 = (select(ReviewRun)
              .where(ReviewRun.workspace_id == workspace_id, _after(ReviewRun, PR_REVIEW, position))
              .order_by(ReviewRun.created_at.desc(), ReviewRun.id.desc()).limit(limit))
        if state:
            q3 = q3.where(ReviewRun.state == state)
        rows += [FeedRow(r.created_at, PR_REVIEW, r.id, review=r) for r in session.scalars(q3)]
    rows.sort(key=lambda r: (r.created_at, r.rank, r.id), reverse=True)
    return rows
