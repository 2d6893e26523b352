"""Workspaces: the tenancy boundary every other query is scoped by."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from optio.store.models import Workspace

DEFAULT_SLUG = "default"


def ensure_default(session: Session) -> Workspace:
    ws = session.scalar(select(Workspace).where(Workspace.slug == DEFAULT_SLUG))
    if ws is None:
        ws = Workspace(slug=DEFAULT_SLUG, name="Default")
        session.add(ws)
        session.flush()
    return ws


def by_slug(session: Session, slug: str) -> Workspace | None:
    return session.scalar(select(Workspace).where(Workspace.slug == slug))


def list_all(session: Session) -> list[Workspace]:
    return list(session.scalars(select(Workspace).order_by(Workspace.id)))
