"""Repo tasks: create (with dependencies), read with their pull request, and steer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from optio.errors import Invalid, NotFound
from optio.services.jobs import validate_agent
from optio.services.repos import find_repo
from optio.services.runs import decode_cursor, encode_cursor
from optio.services.secret_refs import require_visible
from optio.store import queue
from optio.store.db import Database
from optio.store.models import CiRun, PrReview, PullRequest, Repo, RepoTask, TaskDependency
from optio.store.runs import record_event

KIND = "repo_task"


def create_task(db: Database, workspace_id: int, data: dict[str, Any]) -> RepoTask:
    """Insert a pending task; its dependency rows, event and reconcile enqueue share the transaction."""
    with db.write() as session:
        repo = find_repo(session, workspace_id, data["repo"])
        agent_type = data.get("agent_type") or repo.agent_type
        agent_config = dict(repo.agent_config or {}) if agent_type == repo.agent_type else {}
        agent_config.update(data.get("agent_config") or {})
        validate_agent(agent_type, agent_config)
        secret_names = list(data.get("secret_names") or [])
        require_visible(session, workspace_id, secret_names, repo_id=repo.id)
        deps = sorted(set(data.get("depends_on") or []))
        for dep in deps:
            exists = session.scalar(
                select(RepoTask.id).where(RepoTask.id == dep, RepoTask.workspace_id == workspace_id)
            )
            if exists is None:
                raise Invalid(f"dependency task {dep} not found", field="depends_on")
        task = RepoTask(
            workspace_id=workspace_id, repo_id=repo.id, title=data["title"], prompt=data["prompt"],
            agent_type=agent_type, agent_config=agent_config, priority=data.get("priority", 0),
            max_retries=data.get("max_retries", 1), state="pending", secret_names=secret_names,
            ticket_ref=data.get("ticket_ref"), created_by=data.get("created_by"),
        )
        session.add(task)
        session.flush()
        for dep in deps:
            session.add(TaskDependency(workspace_id=workspace_id, task_id=task.id, depends_on_id=dep))
        record_event(session, workspace_id=workspace_id, kind=KIND, run_id=task.id, event="created", from_state=None,
                     to_state="pending", reason=f"task for repo {repo.name!r} created")
        queue.enqueue(session, KIND, task.id, workspace_id, reason="created")
    return task


@dataclass
class TaskView:
    task: RepoTask
    repo: Repo
    pr: PullRequest | None
    ci_status: str | None
    review_status: str | None
    depends_on: list[int]


def _view(session: Session, task: RepoTask) -> TaskView:
    repo = session.get(Repo, task.repo_id)
    assert repo is not None
    pr = session.get(PullRequest, task.pr_id) if task.pr_id else None
    ci_status = review_status = None
    if pr is not None:
        if repo.ci_command:
            ci = session.scalar(select(CiRun).where(CiRun.pr_id == pr.id, CiRun.head_sha == pr.head_sha))
            ci_status = ci.status if ci else "pending"
        rev = session.scalar(select(PrReview).where(PrReview.pr_id == pr.id).order_by(PrReview.id.desc()).limit(1))
        if rev is not None:
            review_status = "approved" if rev.verdict == "approve" else "changes_requested"
    deps = list(session.scalars(select(TaskDependency.depends_on_id).where(TaskDependency.task_id == task.id)))
    return TaskView(task, repo, pr, ci_status, review_status, deps)


def get_task(session: Session, workspace_id: int, task_id: int) -> RepoTask:
    task = session.scalar(select(RepoTask).where(RepoTask.id == task_id, RepoTask.workspace_id == workspace_id))
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


def task_view(db: Database, workspace_id: int, task_id: int) -> TaskView:
    with db.read() as session:
        return _view(session, get_task(session, workspace_id, task_id))


def list_tasks(db: Database, workspace_id: int, *, repo: str | None = None, state: str | None = None,
               limit: int = 50, cursor: str | None = None) -> tuple[list[TaskView], str | None]:
    before = decode_cursor(cursor)
    with db.read() as session:
        q = select(RepoTask).where(RepoTask.workspace_id == workspace_id).order_by(RepoTask.id.desc()).limit(limit + 1)
        if repo is not None:
            q = q.where(RepoTask.repo_id == find_repo(session, workspace_id, repo).id)
        if state is not None:
            q = q.where(RepoTask.state == state)
        if before is not None:
            q = q.where(RepoTask.id < before)
        tasks = list(session.scalars(q))
        views = [_view(session, t) for t in tasks[:limit]]
    return views, encode_cursor(tasks[limit - 1].id) if len(tasks) > limit else None
