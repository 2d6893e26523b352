"""Repo tasks as the API creates, reads and lists them, each with its repo, pull request and dependencies.

Control reads and writes a running task through `store.runs`; this module is the API's side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from optio.errors import Invalid, NotFound
from optio.store import queue
from optio.store.models import AgentProcess, CiRun, PrReview, PullRequest, Repo, RepoTask, TaskDependency
from optio.store.repo_tasks import review_policy
from optio.store.runs import record_event
from optio.store.task_timeline import attempts_by_run

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
    return views_of(session, [task])[0]


def views_of(session: Session, tasks: Sequence[RepoTask]) -> list[TaskView]:
    """Each task with its repo, PR, CI and review status, dependencies and attempts, in the order given.

    A page of tasks costs a fixed number of queries (one per related table), not a few per task.
    """
    if not tasks:
        return []
    task_ids = [t.id for t in tasks]
    repos = {r.id: r for r in session.scalars(select(Repo).where(Repo.id.in_({t.repo_id for t in tasks})))}
    pr_ids = {t.pr_id for t in tasks if t.pr_id}
    prs = {p.id: p for p in session.scalars(select(PullRequest).where(PullRequest.id.in_(pr_ids)))} if pr_ids else {}
    ci_of: dict[tuple[int, str], CiRun] = {}
    latest_review: dict[int, PrReview] = {}
    if prs:
        heads = [(p.id, p.head_sha) for p in prs.values()]
        for ci_run in session.scalars(select(CiRun).where(tuple_(CiRun.pr_id, CiRun.head_sha).in_(heads))
                                  .order_by(CiRun.id.desc())):
            ci_of[(ci_run.pr_id, ci_run.head_sha)] = ci_run  # the oldest run on the head wins, as before
        for review in session.scalars(select(PrReview).where(PrReview.pr_id.in_(list(prs))).order_by(PrReview.id)):
            latest_review[review.pr_id] = review
    deps: dict[int, list[int]] = {t: [] for t in task_ids}
    for task_id, dep in session.execute(select(TaskDependency.task_id, TaskDependency.depends_on_id)
                                        .where(TaskDependency.task_id.in_(task_ids))
                                        .order_by(TaskDependency.task_id, TaskDependency.depends_on_id)):
        deps[task_id].append(dep)
    attempts = attempts_by_run(session, KIND, task_ids)
    views = []
    for task in tasks:
        repo = repos[task.repo_id]
        pr = prs.get(task.pr_id) if task.pr_id else None
        ci_status = review_status = None
        if pr is not None:
            if repo.ci_command:
                ci = ci_of.get((pr.id, pr.head_sha))
                ci_status = ci.status if ci else "pending"
            rev = latest_review.get(pr.id)
            if rev is not None:
                review_status = "approved" if rev.verdict == "approve" else "changes_requested"
            if _awaits_person(task, repo, pr, ci_status, rev):
                review_status = "awaiting_approval"
        views.append(TaskView(task, repo, pr, ci_status, review_status, deps[task.id],
                              [p for p in attempts.get(task.id, []) if p.workspace_id == task.workspace_id]))
    return views


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
