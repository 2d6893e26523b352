"""Repos as the API registers, changes and lists them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from optio.store.db import Database
from optio.store.models import AgentProcess, ReconcileItem, Repo, RepoTask, ReviewRun, RunEvent, RunLog
from optio.store.named import find_by_ref, insert_unique


def find_repo(session: Session, workspace_id: int, ref: str | int) -> Repo:
    return find_by_ref(session, Repo, workspace_id, ref, "repo")


def list_repos(session: Session, workspace_id: int) -> list[Repo]:
    return list(session.scalars(select(Repo).where(Repo.workspace_id == workspace_id).order_by(Repo.id)))


def remotes_outside(session: Session, workspace_id: int) -> list[str]:
    """The remote URLs other workspaces registered."""
    return list(session.scalars(select(Repo.remote_url).where(Repo.workspace_id != workspace_id)))


def insert_repo(db: Database, workspace_id: int, fields: dict[str, Any]) -> Repo:
    """A new repo; a name already used in the workspace is a 409."""
    return insert_unique(db, Repo(workspace_id=workspace_id, **fields), "repo")


def update_repo(session: Session, workspace_id: int, repo_id: int, changes: dict[str, Any]) -> Repo:
    """Set the given columns of the workspace's repo, in the caller's transaction."""
    repo = find_repo(session, workspace_id, repo_id)
    for key, value in changes.items():
        setattr(repo, key, value)
    return repo


def unfinished_tasks(session: Session, repo_id: int, finished: frozenset[str]) -> int:
    """How many of the repo's tasks are in none of the `finished` states."""
    return session.scalar(select(func.count()).select_from(RepoTask)
                          .where(RepoTask.repo_id == repo_id, RepoTask.state.not_in(finished))) or 0


def delete_repo(session: Session, repo_id: int) -> None:
    """The repo with everything of its tasks: the rows keyed by (kind, run id) first, then the repo (its tasks,
    PRs, CI runs, reviews and repo secrets go with it through their foreign keys)."""
    owned = {
        "repo_task": list(session.scalars(select(RepoTask.id).where(RepoTask.repo_id == repo_id))),
        "pr_review": list(session.scalars(select(ReviewRun.id).join(RepoTask, RepoTask.id == ReviewRun.task_id)
                                          .where(RepoTask.repo_id == repo_id))),
    }
    for kind, ids in owned.items():
        if not ids:
            continue
        session.execute(delete(RunEvent).where(RunEvent.run_kind == kind, RunEvent.run_id.in_(ids)))
        session.execute(delete(RunLog).where(RunLog.run_kind == kind, RunLog.run_id.in_(ids)))
        session.execute(delete(AgentProcess).where(AgentProcess.run_kind == kind, AgentProcess.run_id.in_(ids)))
        session.execute(delete(ReconcileItem).where(ReconcileItem.kind == kind, ReconcileItem.run_id.in_(ids)))
    session.execute(delete(Repo).where(Repo.id == repo_id))
