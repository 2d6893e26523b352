"""Audit rows: who did what in a workspace, newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from optio.store.models import AuditEvent
from optio.store.types import utcnow


def database_url(session: Session) -> str:
    """The URL of the database the session writes to: the key of its workspace redactors."""
    return str(session.get_bind().engine.url)


def add_event(session: Session, *, workspace_id: int, user_id: int | None, actor: str, action: str,
              target_type: str, target_id: str, detail: dict[str, Any]) -> None:
    session.add(AuditEvent(workspace_id=workspace_id, user_id=user_id, actor=actor, action=action,
                           target_type=target_type, target_id=target_id, detail=detail, created_at=utcnow()))


def list_events(session: Session, workspace_id: int, *, action: str | None, actor: str | None, before: int | None,
                limit: int) -> list[AuditEvent]:
    q = select(AuditEvent).where(AuditEvent.workspace_id == workspace_id).order_by(AuditEvent.id.desc())
    if action:
        q = q.where(AuditEvent.action == action)
    if actor:
        q = q.where(AuditEvent.actor == actor)
    if before is not None:
        q = q.where(AuditEvent.id < before)
    return list(session.scalars(q.limit(limit)))
