"""The audit log of the caller's workspace (admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from optio.api.account_schemas import AuditEventOut, AuditPage
from optio.api.deps import Ctx, get_admin_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.schemas import PageLimit
from optio.services import audit

router = APIRouter(prefix="/api/audit", tags=["audit"], responses=ERROR_RESPONSES)


@router.get("", response_model=AuditPage)
def list_audit(
    ctx: Ctx = Depends(get_admin_ctx),
    action: str | None = Query(default=None, max_length=100, description="e.g. create_job, cancel_run, secret.inject"),
    actor: str | None = Query(default=None, max_length=200),
    limit: Annotated[PageLimit, Query()] = 50,
    cursor: str | None = Query(default=None, max_length=100),
) -> AuditPage:
    rows, next_cursor = audit.list_events(ctx.db, ctx.workspace_id, action=action, actor=actor, limit=limit,
                                          cursor=cursor)
    return AuditPage(
        items=[AuditEventOut.model_validate(r) for r in rows],
        next_cursor=next_cursor,
    )
