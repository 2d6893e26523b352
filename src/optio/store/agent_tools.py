"""MCP server and skill definitions, by workspace and repo scope; what a run of a repo gets is both scopes'."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from optio.errors import Conflict, NotFound
from optio.store.db import Database
from optio.store.models import McpServerDef, Repo, SkillDef

T = TypeVar("T", McpServerDef, SkillDef)


def scope_key(repo_id: int | None) -> str:
    return f"repo:{repo_id}" if repo_id is not None else "workspace"


def insert(db: Database, row: T, noun: str) -> T:
    """Add a definition; its name is unique per scope (a clash is a 409 naming the field)."""
    try:
        with db.write() as session:
            if row.repo_id is not None and session.scalar(
                select(Repo.id).where(Repo.id == row.repo_id, Repo.workspace_id == row.workspace_id)
            ) is None:
                raise NotFound(f"repo {row.repo_id} not found", field="repo")
            session.add(row)
    except IntegrityError:
        raise Conflict(f"a {noun} named {row.name!r} already exists in this scope", field="name") from None
    return row


def listed(session: Session, model: type[T], workspace_id: int, *, repo_id: int | None) -> list[T]:
    """The workspace's definitions (only one repo's, if given), by scope then name."""
    q = select(model).where(model.workspace_id == workspace_id).order_by(model.scope_key, model.name)
    if repo_id is not None:
        q = q.where(model.repo_id == repo_id)
    return list(session.scalars(q))


def find(session: Session, model: type[T], workspace_id: int, repo_id: int | None, name: str) -> T | None:
    return session.scalar(select(model).where(
        model.workspace_id == workspace_id, model.scope_key == scope_key(repo_id), model.name == name))


def delete(session: Session, row: McpServerDef | SkillDef) -> None:
    session.delete(row)


def for_run(session: Session, model: type[T], workspace_id: int, repo_id: int | None) -> list[T]:
    """What a run gets: the workspace's definitions, and its repo's, a repo's winning over a same-named one."""
    keys = [scope_key(None)] + ([scope_key(repo_id)] if repo_id is not None else [])
    rows = session.scalars(select(model).where(model.workspace_id == workspace_id, model.scope_key.in_(keys)))
    chosen: dict[str, T] = {}
    for row in sorted(rows, key=lambda r: (r.repo_id is not None, r.name)):
        chosen[row.name] = row
    return [chosen[name] for name in sorted(chosen)]


def repos_named(session: Session, workspace_id: int, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(select(Repo.id, Repo.name).where(Repo.workspace_id == workspace_id,
                                                             or_(*(Repo.id == i for i in ids))))
    return {row[0]: row[1] for row in rows}
