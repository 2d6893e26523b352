"""Outgoing notification webhooks of the workspace and their delivery log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from optio.api.deps import Ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.schemas import Id
from optio.api.trigger_schemas import (
    DeliveryOut,
    NotificationWebhookCreate,
    NotificationWebhookCreated,
    NotificationWebhookOut,
)
from optio.services import notifications as notify_service

router = APIRouter(prefix="/api/notifications", tags=["notifications"], responses=ERROR_RESPONSES)


def hook_out(row: Any) -> NotificationWebhookOut:
    return NotificationWebhookOut(id=row.id, url=row.url, format=row.format, events=list(row.events or []),
                                  created_at=row.created_at)


@router.post("/webhooks", response_model=NotificationWebhookCreated, status_code=201)
def create_webhook(body: NotificationWebhookCreate, ctx: Ctx = Depends(get_ctx)) -> NotificationWebhookCreated:
    auth = ctx.optio.auth
    assert auth is not None, "the server's auth state is set before requests are served"
    row, secret = notify_service.create(ctx.db, auth.secrets.keyring, ctx.workspace_id, body.model_dump(),
                                        allowlist=ctx.optio.settings.outbound_allowlist)
    return NotificationWebhookCreated(**hook_out(row).model_dump(), secret=secret)


@router.get("/webhooks", response_model=list[NotificationWebhookOut])
def list_webhooks(ctx: Ctx = Depends(get_ctx)) -> list[NotificationWebhookOut]:
    return [hook_out(r) for r in notify_service.list_webhooks(ctx.db, ctx.workspace_id)]


@router.delete("/webhooks/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: Id, ctx: Ctx = Depends(get_ctx)) -> Response:
    notify_service.delete(ctx.db, ctx.workspace_id, webhook_id)
    return Response(status_code=204)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=list[DeliveryOut])
def list_deliveries(webhook_id: Id, ctx: Ctx = Depends(get_ctx)) -> list[DeliveryOut]:
    return [DeliveryOut(id=d.id, event=d.event, state=d.state, attempts=d.attempts, last_status=d.last_status,
                        last_error=d.last_error, next_attempt_at=d.next_attempt_at, created_at=d.created_at,
                        delivered_at=d.delivered_at, payload=d.payload or {})
            for d in notify_service.deliveries(ctx.db, ctx.workspace_id, webhook_id)]
