"""Ticket sources (`/api/ticket-sources`), the tickets they spawned tasks from (`/api/ticket-links`), and
their webhooks (`/api/ticket-hooks/{source_id}`: no login, the provider's signature or token is the
credential; 401 unless it verifies, 413 over the body limit, 202 when accepted)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from optio.api.deps import Ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.ticket_schemas import (
    TicketHookOut,
    TicketLinkOut,
    TicketNoteOut,
    TicketSourceCreate,
    TicketSourceCreated,
    TicketSourceOut,
)
from optio.security.crypto import Keyring
from optio.services import ticket_intake
from optio.services import ticket_sources as source_service

router = APIRouter(prefix="/api/ticket-sources", tags=["tickets"], responses=ERROR_RESPONSES)
links = APIRouter(prefix="/api/ticket-links", tags=["tickets"], responses=ERROR_RESPONSES)
hooks = APIRouter(prefix="/api/ticket-hooks", tags=["tickets"], responses=ERROR_RESPONSES)


def _keyring(ctx: Ctx) -> Keyring:
    auth = ctx.optio.auth
    assert auth is not None, "the server's auth state is set before requests are served"
    return auth.secrets.keyring


def source_out(row: Any, request: Request) -> TicketSourceOut:
    return TicketSourceOut(**source_service.view(row, str(request.base_url)))


@router.post("", response_model=TicketSourceCreated, status_code=201)
def create_source(body: TicketSourceCreate, request: Request, ctx: Ctx = Depends(get_ctx)) -> TicketSourceCreated:
    created = source_service.create(ctx.db, _keyring(ctx), ctx.workspace_id, body.model_dump(),
                                    allowlist=ctx.optio.settings.outbound_allowlist)
    out = source_out(created.source, request)
    return TicketSourceCreated(**out.model_dump(), webhook_secret=created.webhook_secret)


@router.get("", response_model=list[TicketSourceOut])
def list_sources(request: Request, ctx: Ctx = Depends(get_ctx)) -> list[TicketSourceOut]:
    return [source_out(s, request) for s in source_service.list_sources(ctx.db, ctx.workspace_id)]


@router.get("/{ref}", response_model=TicketSourceOut)
def get_source(ref: str, request: Request, ctx: Ctx = Depends(get_ctx)) -> TicketSourceOut:
    return source_out(source_service.get(ctx.db, ctx.workspace_id, ref), request)


@router.delete("/{ref}", status_code=204)
def delete_source(ref: str, ctx: Ctx = Depends(get_ctx)) -> Response:
    source_service.delete(ctx.db, ctx.workspace_id, ref)
    return Response(status_code=204)


@links.get("", response_model=list[TicketLinkOut])
def list_links(ctx: Ctx = Depends(get_ctx)) -> list[TicketLinkOut]:
    return [TicketLinkOut(id=link.id, source=source.name, kind=source.kind, external_id=link.external_id,
                          key=link.key, url=link.url, title=link.title, task_id=link.task_id,
                          trigger_id=link.trigger_id, posted=list(link.posted or []),
                          notes=[TicketNoteOut(event=a.event, state=a.state, attempts=a.attempts,
                                               last_error=a.last_error, done_at=a.done_at) for a in actions],
                          created_at=link.created_at)
            for link, source, actions in ticket_intake.actions_view(ctx.db, ctx.workspace_id)]


@hooks.post("/{source_id}", response_model=TicketHookOut, status_code=202)
async def receive_hook(source_id: int, request: Request) -> TicketHookOut:
    """A tracker's webhook delivery: verified by the source's provider, then each ticket it names is read and,
    when a trigger matches and it spawned nothing before, becomes a repo task."""
    body = await request.body()
    optio = request.app.state.optio
    accepted = await run_in_threadpool(ticket_intake.receive, optio.db, optio.auth.secrets, optio.auth.secrets.keyring,
                                       source_id, dict(request.headers), body)
    return TicketHookOut(events=accepted.events, spawned=accepted.spawned)
