"""Blueprints: saved repo-task definitions, found by name or id within a workspace."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from optio.store.db import Database
from optio.store.models import Blueprint, Repo
from optio.store.named import find_by_ref, insert_unique


def insert(db: Database, workspace_id: int, fields: dict[str, Any]) -> Blueprint:
    return insert_unique(db, Blueprint(workspace_id=workspace_id, **fields), "blueprint")


def find(session: Session, workspace_id: int, ref: str | int) -> Blueprint:
    return find_by_ref(session, Blueprint, workspace_id, ref, "blueprint")


def list_blueprints(session: Session, workspace_id: int) -> list[tuple[Blueprint, str]]:
    """The workspace's blueprints with their repo's name."""
    q = (select(Blueprint, Repo.name).join(Repo, Repo.id == Blueprint.repo_id)
         .where(Blueprint.workspace_id == workspace_id).order_by(Blueprint.id))
    return [(r[0], r[1]) for r in session.execute(q)]


def repo_of(session: Session, blueprint: Blueprint) -> Repo:
    repo = session.get(Repo, blueprint.repo_id)
    assert repo is not None, "a blueprint's repo is deleted with it (ON DELETE CASCADE)"
    return repo


def name_of(session: Session, blueprint_id: int) -> str:
    row = session.get(Blueprint, blueprint_id)
    return row.name if row else ""


def delete(session: Session, row: Blueprint) -> None:
    session.delete(row)
