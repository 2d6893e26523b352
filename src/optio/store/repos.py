"""Repos as the API registers, changes and lists them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from optio.store.db import Database
from optio.store.models import Repo
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
