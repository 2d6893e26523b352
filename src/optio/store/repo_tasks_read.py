"""Repo tasks as the API creates, reads and lists them, each with its repo, pull request and dependencies.

Control reads and writes a running task through `store.runs`; this module is the API's side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from optio.errors import Invalid, NotFound
from optio.store import queue
from optio.store.models import AgentProcess, CiRun, PrReview, PullRequest, Repo, RepoTask, TaskDependency
from optio.store.repo_tasks import review_policy
from optio.store.runs import record_event
from optio.store.task_timeline import attempts_of

KIND = "repo_task"


@dataclass
class TaskView:
    """A task with what its API body shows beside it: its repo's name, its PR and that PR's CI and review."""

    task: RepoTask
    repo: Repo
    pr: PullRequest | None
    ci_status: str | None
    review_status: str | None
    depends_on: list[int]
    attempts: list[AgentProcess] = field(default_factory=list)


@dataclass(frozen=True)
class NewTask:
    title: str
    prompt: str
    agent_type: str
    agent_config: dict[str, object]
    priority: int
    max_retries: int
    secret_names: list[str]
    ticket_ref: str | None
    created_by: int | None
    review_settings: dict[str, object] = field(default_factory=dict)  # a blueprint's (domain/review_policy.py)


def insert_task(session: Session, workspace_id: int, repo: Repo, new: NewTask, depends_on: list[int]) -> RepoTask:
    """A pending task with its dependency rows, `created` event and reconcile enqueue, in the caller's transaction.

    Every dependency must be a task of the same workspace.
    """
    for dep in depends_on:
        exists = session.scalar(select(RepoTask.id).where(RepoTask.id == dep, RepoTask.workspace_id == workspace_id))
        if exists is None:
            raise Invalid(f"dependency task {dep} not found", field="depends_on")
    task = RepoTask(
        workspace_id=workspace_id, repo_id=repo.id, title=new.title, prompt=new.prompt, agent_type=new.agent_type,
        agent_config=new.agent_config, priority=new.priority, max_retries=new.max_retries, state="pending",
        secret_names=new.secret_names, ticket_ref=new.ticket_ref, created_by=new.created_by,
        review_settings=dict(new.review_settings),
    )
    session.add(task)
    session.flush()
    for dep in depends_on:
        session.add(TaskDependency(workspace_id=workspace_id, task_id=task.id, depends_on_id=dep))
    record_event(session, workspace_id=workspace_id, kind=KIND, run_id=task.id, event="created", from_state=None,
                 to_state="pending", reason=f"task for repo {repo.name!r} created")
    queue.enqueue(session, KIND, task.id, workspace_id, reason="created")
    return task


def get_task(session: Session, workspace_id: int, task_id: int) -> RepoTask:
    task = session.scalar(select(RepoTask).where(RepoTask.id == task_id, RepoTask.workspace_id == workspace_id))
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


def view_of(session: Session, task: RepoTask) -> TaskView:
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
        if _awaits_person(task, repo, pr, ci_status, rev):
            review_status = "awaiting_approval"
    deps = list(session.scalars(select(TaskDependency.depends_on_id).where(TaskDependency.task_id == task.id)))
    return TaskView(task, repo, pr, ci_status, review_status, deps,
                    attempts_of(session, KIND, task.id, task.workspace_id))


def _awaits_person(task: RepoTask, repo: Repo, pr: PullRequest, ci_status: str | None,
                   latest: PrReview | None) -> bool:
    """CI is green (or absent), the repo wants an approval, and no review was given on this head yet.

    Only a person can move such a task on (a configured review agent reviews by itself), so it must say so.
    """
    policy = review_policy(repo, task)
    if task.state != "pr_opened" or pr.state != "open" or not policy.require_approval or policy.review_agent_type:
        return False
    if ci_status not in ("passing", None):
        return False
    return latest is None or latest.head_sha != pr.head_sha


def list_tasks(session: Session, workspace_id: int, *, repo_id: int | None, state: str | None, limit: int,
               before: int | None) -> list[RepoTask]:
    """Up to `limit` tasks, newest first, with ids below `before`."""
    q = select(RepoTask).where(RepoTask.workspace_id == workspace_id).order_by(RepoTask.id.desc()).limit(limit)
    if repo_id is not None:
        q = q.where(RepoTask.repo_id == repo_id)
    if state is not None:
        q = q.where(RepoTask.state == state)
    if before is not None:
        q = q.where(RepoTask.id < before)
    return list(session.scalars(q))
