"""The audit log: who did what in a workspace, queryable newest first."""

from __future__ import annotations

from typing import Any

from optio.security.redact import registry_for
from optio.services.runs import decode_cursor, encode_cursor
from optio.store import audit as audit_store
from optio.store.db import Database
from optio.store.models import AuditEvent
from optio.store.session import Session


def record_in(
    session: Session, *, workspace_id: int, user_id: int | None, actor: str, action: str,
    target_type: str = "", target_id: str | int = "", detail: dict[str, Any] | None = None,
) -> None:
    """Add an audit row to an open transaction (so it commits, or not, with what it describes).

    Its detail is masked with the workspace's own secrets (any scope), never another workspace's.
    """
    redactor = registry_for(audit_store.database_url(session)).for_workspace(workspace_id)
    audit_store.add_event(
        session, workspace_id=workspace_id, user_id=user_id, actor=actor[:200], action=action[:100],
        target_type=target_type[:64], target_id=str(target_id)[:200], detail=redactor.redact_value(detail or {}),
    )


def record(db: Database, **kwargs: Any) -> None:
    with db.write() as session:
        record_in(session, **kwargs)


def list_events(
    db: Database, workspace_id: int, *, action: str | None = None, actor: str | None = None,
    limit: int = 50, cursor: str | None = None,
) -> tuple[list[AuditEvent], str | None]:
    before = decode_cursor(cursor)
    with db.read() as session:
        rows = audit_store.list_events(session, workspace_id, action=action, actor=actor, before=before,
                                       limit=limit + 1)
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor
