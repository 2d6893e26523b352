"""Read-only aggregates for the dashboard: counts, who is running, what needs a person, what it cost."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from optio.store.models import Job, JobRun, PullRequest, ReconcileItem, Repo, RepoTask, ReviewRun

ACTIVE_TASK_STATES = ("provisioning", "running")


@dataclass(frozen=True)
class Spend:
    """One run's cost, with what to group it by: `day` is its UTC creation date."""

    kind: str
    run_id: int
    created_at: datetime
    repo: str | None
    job: str | None
    agent_type: str
    cost_usd: float
    cost_imputed: bool
    input_tokens: int
    output_tokens: int


def state_counts(session: Session, workspace_id: int) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for kind, model in (("repo_task", RepoTask), ("job_run", JobRun)):
        rows = session.execute(select(model.state, func.count()).where(model.workspace_id == workspace_id)
                               .group_by(model.state))
        out[kind] = {r[0]: int(r[1]) for r in rows}
    return out


def running_tasks(session: Session, workspace_id: int, limit: int = 50) -> list[tuple[RepoTask, str]]:
    rows = session.execute(
        select(RepoTask, Repo.name).join(Repo, Repo.id == RepoTask.repo_id)
        .where(RepoTask.workspace_id == workspace_id, RepoTask.state.in_(ACTIVE_TASK_STATES))
        .order_by(RepoTask.id.desc()).limit(limit))
    return [(r[0], r[1]) for r in rows]


def running_job_runs(session: Session, workspace_id: int, limit: int = 50) -> list[tuple[JobRun, str]]:
    rows = session.execute(
        select(JobRun, Job.name).join(Job, Job.id == JobRun.job_id)
        .where(JobRun.workspace_id == workspace_id, JobRun.state == "running")
        .order_by(JobRun.id.desc()).limit(limit))
    return [(r[0], r[1]) for r in rows]


def attention(session: Session, workspace_id: int, limit: int = 50) -> list[tuple[RepoTask, str]]:
    rows = session.execute(
        select(RepoTask, Repo.name).join(Repo, Repo.id == RepoTask.repo_id)
        .where(RepoTask.workspace_id == workspace_id, RepoTask.state == "needs_attention")
        .order_by(RepoTask.updated_at.desc()).limit(limit))
    return [(r[0], r[1]) for r in rows]


def queue_depth(session: Session, workspace_id: int) -> int:
    return session.scalar(select(func.count()).select_from(ReconcileItem)
                          .where(ReconcileItem.workspace_id == workspace_id)) or 0


def recent_merges(session: Session, workspace_id: int, limit: int = 10) -> list[tuple[PullRequest, str]]:
    rows = session.execute(
        select(PullRequest, Repo.name).join(Repo, Repo.id == PullRequest.repo_id)
        .where(PullRequest.workspace_id == workspace_id, PullRequest.state == "merged")
        .order_by(PullRequest.merged_at.desc()).limit(limit))
    return [(r[0], r[1]) for r in rows]


def _costly(model: Any) -> Any:
    return (model.cost_usd > 0) | (model.input_tokens > 0) | (model.output_tokens > 0)


def spend_since(session: Session, workspace_id: int, since: datetime) -> list[Spend]:
    """Every run created since `since` that cost something or used tokens."""
    tasks = session.execute(
        select(RepoTask, Repo.name).join(Repo, Repo.id == RepoTask.repo_id)
        .where(RepoTask.workspace_id == workspace_id, RepoTask.created_at >= since, _costly(RepoTask)))
    runs = session.execute(
        select(JobRun, Job.name, Job.agent_type).join(Job, Job.id == JobRun.job_id)
        .where(JobRun.workspace_id == workspace_id, JobRun.created_at >= since, _costly(JobRun)))
    reviews = session.execute(
        select(ReviewRun, Repo.name).join(RepoTask, RepoTask.id == ReviewRun.task_id)
        .join(Repo, Repo.id == RepoTask.repo_id)
        .where(ReviewRun.workspace_id == workspace_id, ReviewRun.created_at >= since, _costly(ReviewRun)))
    return ([_spend("repo_task", t, repo=name, job=None, agent=t.agent_type) for t, name in tasks]
            + [_spend("job_run", r, repo=None, job=name, agent=agent) for r, name, agent in runs]
            + [_spend("pr_review", r, repo=name, job=None, agent=r.agent_type) for r, name in reviews])


def _spend(kind: str, run: Any, *, repo: str | None, job: str | None, agent: str) -> Spend:
    return Spend(kind=kind, run_id=run.id, created_at=run.created_at, repo=repo, job=job, agent_type=agent,
                 cost_usd=float(run.cost_usd or 0), cost_imputed=bool(run.cost_imputed),
                 input_tokens=int(run.input_tokens or 0), output_tokens=int(run.output_tokens or 0))
