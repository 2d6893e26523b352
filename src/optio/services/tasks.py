"""Repo tasks: create (with dependencies), read with their pull request, and steer."""

from __future__ import annotations

from typing import Any

from optio.services.jobs import validate_agent
from optio.services.repos import find_repo
from optio.services.runs import decode_cursor, encode_cursor
from optio.services.secret_refs import require_visible
from optio.store import repo_tasks_read as task_store
from optio.store.db import Database
from optio.store.models import RepoTask
from optio.store.repo_tasks_read import TaskView
from optio.store.session import Session
from optio.store.task_timeline import Section, task_sections

__all__ = ["TaskView", "create_task", "get_task", "list_tasks", "task_timeline", "task_view", "task_views"]
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
        new = task_store.NewTask(
            title=data["title"], prompt=data["prompt"], agent_type=agent_type, agent_config=agent_config,
            priority=data.get("priority", 0), max_retries=data.get("max_retries", 1), secret_names=secret_names,
            ticket_ref=data.get("ticket_ref"), created_by=data.get("created_by"),
        )
        return task_store.insert_task(session, workspace_id, repo, new, deps)


def get_task(session: Session, workspace_id: int, task_id: int) -> RepoTask:
    return task_store.get_task(session, workspace_id, task_id)


def task_view(db: Database, workspace_id: int, task_id: int) -> TaskView:
    with db.read() as session:
        return task_store.view_of(session, get_task(session, workspace_id, task_id))


def task_views(db: Database, tasks: list[RepoTask]) -> dict[int, TaskView]:
    """Views of tasks already read (a page of the feed) by id, their related rows read with a few queries."""
    if not tasks:
        return {}
    with db.read() as session:
        return {v.task.id: v for v in task_store.views_of(session, tasks)}


def list_tasks(db: Database, workspace_id: int, *, repo: str | None = None, state: str | None = None,
               limit: int = 50, cursor: str | None = None) -> tuple[list[TaskView], str | None]:
    before = decode_cursor(cursor)
    with db.read() as session:
        repo_id = find_repo(session, workspace_id, repo).id if repo is not None else None
        tasks = task_store.list_tasks(session, workspace_id, repo_id=repo_id, state=state, limit=limit + 1,
                                      before=before)
        views = task_store.views_of(session, tasks[:limit])
    return views, encode_cursor(tasks[limit - 1].id) if len(tasks) > limit else None


def task_timeline(db: Database, workspace_id: int, task_id: int) -> tuple[str, list[Section]]:
    """The task's state and every run's output (attempts, CI, reviews) in order, read in one transaction."""
    with db.read() as session:
        task = get_task(session, workspace_id, task_id)
        return task.state, task_sections(session, task_id, workspace_id)
