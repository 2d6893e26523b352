"""What a hosted forge (GitLab, GitHub) reads of Optio's own rows: its repos and the tasks with a branch on them.

A hosted forge keeps its pull requests on the platform, not in Optio's tables, so these are the only facts it
needs from the database: which repo a webhook or poll is about, and which of Optio's tasks may own a PR there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from optio.store.models import Repo, RepoTask

TERMINAL_TASK_STATES = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class TaskOnForge:
    task_id: int
    workspace_id: int
    repo_id: int
    state: str
    branch: str


def repos_of_forge(session: Session, forge: str) -> list[Repo]:
    return list(session.scalars(select(Repo).where(Repo.forge == forge).order_by(Repo.id)))


def live_tasks_with_branch(session: Session, repo_id: int) -> list[TaskOnForge]:
    """The repo's tasks that are not over and have pushed (or will push) a branch: the ones a PR may belong to."""
    rows = session.execute(
        select(RepoTask.id, RepoTask.workspace_id, RepoTask.repo_id, RepoTask.state, RepoTask.branch)
        .where(RepoTask.repo_id == repo_id, RepoTask.branch.is_not(None),
               RepoTask.state.not_in(TERMINAL_TASK_STATES))
        .order_by(RepoTask.id)
    )
    return [TaskOnForge(r[0], r[1], r[2], r[3], r[4] or "") for r in rows]


def task_ticket_ref(session: Session, task_id: int) -> str | None:
    return session.scalar(select(RepoTask.ticket_ref).where(RepoTask.id == task_id))


def task_workspace(session: Session, task_id: int) -> int | None:
    return session.scalar(select(RepoTask.workspace_id).where(RepoTask.id == task_id))


def repos_by_id(session: Session, repo_id: int) -> Repo | None:
    return session.get(Repo, repo_id)
