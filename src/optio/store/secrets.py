"""Sealed secret rows, one per (workspace, scope, name); sealing and opening them is the service's part."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from optio.errors import Conflict, NotFound
from optio.store.db import Database
from optio.store.models import JobRun, Repo, RepoTask, ReviewRun, Secret, User
from optio.store.types import utcnow


def all_secrets(session: Session) -> list[Secret]:
    return list(session.scalars(select(Secret)))


def upsert(db: Database, workspace_id: int, *, repo_id: int | None, scope_key: str, name: str, ciphertext: str,
           key_version: int, created_by: int | None) -> tuple[Secret, bool]:
    """Create or replace a sealed value in its own transaction; returns (row, created).

    A repo scope must name a repo of the workspace; two writers creating one name at once is a 409.
    """
    try:
        with db.write() as session:
            if repo_id is not None and session.scalar(
                select(Repo.id).where(Repo.id == repo_id, Repo.workspace_id == workspace_id)
            ) is None:
                raise NotFound(f"repo {repo_id} not found", field="repo_id")
            row = find(session, workspace_id, scope_key, name)
            created = row is None
            if row is None:
                row = Secret(workspace_id=workspace_id, scope="repo" if repo_id is not None else "workspace",
                             repo_id=repo_id, scope_key=scope_key, name=name, created_by=created_by,
                             ciphertext=ciphertext, key_version=key_version)
                session.add(row)
            else:
                row.ciphertext, row.key_version, row.updated_at = ciphertext, key_version, utcnow()
    except IntegrityError:
        raise Conflict(f"secret {name!r} was set concurrently; try again", field="name") from None
    return row, created


def find(session: Session, workspace_id: int, scope_key: str, name: str) -> Secret | None:
    return session.scalar(select(Secret).where(
        Secret.workspace_id == workspace_id, Secret.scope_key == scope_key, Secret.name == name))


def delete(session: Session, row: Secret) -> None:
    session.delete(row)


def list_secrets(session: Session, workspace_id: int, *, repo_id: int | None) -> list[Secret]:
    """The workspace's secrets (only one repo's, if given), ordered by scope and name."""
    q = select(Secret).where(Secret.workspace_id == workspace_id).order_by(Secret.scope_key, Secret.name)
    if repo_id is not None:
        q = q.where(Secret.repo_id == repo_id)
    return list(session.scalars(q))


def named(session: Session, workspace_id: int, names: Iterable[str], scope_keys: Iterable[str]) -> list[Secret]:
    """The rows of these names in these scopes of the workspace."""
    return list(session.scalars(select(Secret).where(
        Secret.workspace_id == workspace_id, Secret.name.in_(list(names)), Secret.scope_key.in_(list(scope_keys)))))


def existing_names(session: Session, workspace_id: int, names: Iterable[str], scope_keys: Iterable[str]) -> set[str]:
    return set(session.scalars(select(Secret.name).where(
        Secret.workspace_id == workspace_id, Secret.scope_key.in_(list(scope_keys)), Secret.name.in_(list(names)))))


def key_versions_in_use(session: Session) -> set[int]:
    return set(session.scalars(select(Secret.key_version).distinct()))


def run_creator(session: Session, kind: str | None, run_id: int | None) -> tuple[int | None, str | None]:
    """The user who created the run (a review run's task's creator) and their name; (None, None) for Optio."""
    user_id: int | None = None
    if kind == "job_run":
        user_id = session.scalar(select(JobRun.created_by).where(JobRun.id == run_id))
    elif kind == "repo_task":
        user_id = session.scalar(select(RepoTask.created_by).where(RepoTask.id == run_id))
    elif kind == "pr_review":
        user_id = session.scalar(select(RepoTask.created_by).join(ReviewRun, ReviewRun.task_id == RepoTask.id)
                                 .where(ReviewRun.id == run_id))
    username = session.scalar(select(User.username).where(User.id == user_id)) if user_id is not None else None
    return user_id, username
