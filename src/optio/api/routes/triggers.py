"""Triggers (`/api/triggers`) and the signed webhook that fires one (`/api/hooks/{trigger_id}`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from optio.api.deps import Ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.schemas import Id
from optio.api.trigger_schemas import FireOut, TriggerCreate, TriggerCreated, TriggerFireIn, TriggerFireOut, TriggerOut
from optio.security.crypto import Keyring
from optio.services import triggers as trigger_service

router = APIRouter(prefix="/api/triggers", tags=["triggers"], responses=ERROR_RESPONSES)
hooks = APIRouter(prefix="/api/hooks", tags=["triggers"], responses=ERROR_RESPONSES)


def trigger_out(row: Any, target: str, base_url: str) -> TriggerOut:
    view = trigger_service.view(row, target)
    url = f"{base_url.rstrip('/')}/api/hooks/{view['id']}" if view["type"] == "webhook" else None
    return TriggerOut(**view, url=url)


def _keyring(ctx: Ctx) -> Keyring:
    auth = ctx.optio.auth
    assert auth is not None, "the server's auth state is set before requests are served"
    return auth.secrets.keyring


@router.post("", response_model=TriggerCreated, status_code=201)
def create_trigger(body: TriggerCreate, request: Request, ctx: Ctx = Depends(get_ctx)) -> TriggerCreated:
    created = trigger_service.create(ctx.db, _keyring(ctx), ctx.workspace_id, body.model_dump())
    out = trigger_out(created.trigger, created.target_name, str(request.base_url))
    return TriggerCreated(**out.model_dump(), secret=created.secret)


@router.get("", response_model=list[TriggerOut])
def list_triggers(request: Request, ctx: Ctx = Depends(get_ctx)) -> list[TriggerOut]:
    return [trigger_out(t, name, str(request.base_url))
            for t, name in trigger_service.list_triggers(ctx.db, ctx.workspace_id)]


@router.get("/{trigger_id}", response_model=TriggerOut)
def get_trigger(trigger_id: Id, request: Request, ctx: Ctx = Depends(get_ctx)) -> TriggerOut:
    row, name = trigger_service.get(ctx.db, ctx.workspace_id, trigger_id)
    return trigger_out(row, name, str(request.base_url))


@router.delete("/{trigger_id}", status_code=204)
def delete_trigger(trigger_id: Id, ctx: Ctx = Depends(get_ctx)) -> Response:
    trigger_service.delete(ctx.db, ctx.workspace_id, trigger_id)
    return Response(status_code=204)


@router.post("/{trigger_id}/pause", response_model=TriggerOut)
def pause_trigger(trigger_id: Id, request: Request, ctx: Ctx = Depends(get_ctx)) -> TriggerOut:
    row, name = trigger_service.set_paused(ctx.db, ctx.workspace_id, trigger_id, True)
    return trigger_out(row, name, str(request.base_url))


@router.post("/{trigger_id}/resume", response_model=TriggerOut)
def resume_trigger(trigger_id: Id, request: Request, ctx: Ctx = Depends(get_ctx)) -> TriggerOut:
    row, name = trigger_service.set_paused(ctx.db, ctx.workspace_id, trigger_id, False)
    return trigger_out(row, name, str(request.base_url))


@router.post("/{trigger_id}/fire", response_model=FireOut, status_code=202)
def fire_trigger(trigger_id: Id, body: TriggerFireIn | None = None, ctx: Ctx = Depends(get_ctx)) -> FireOut:
    kind, run_id = trigger_service.fire_now(ctx.db, ctx.workspace_id, trigger_id, (body or TriggerFireIn()).params)
    return FireOut(run_kind=kind, run_id=run_id)


@router.get("/{trigger_id}/fires", response_model=list[TriggerFireOut])
def list_fires(trigger_id: Id, ctx: Ctx = Depends(get_ctx)) -> list[TriggerFireOut]:
    return [TriggerFireOut(id=f.id, source=f.source, due_at=f.due_at, run_kind=f.run_kind, run_id=f.run_id,
                           created_at=f.created_at)
            for f in trigger_service.fires(ctx.db, ctx.workspace_id, trigger_id)]


@hooks.post("/{trigger_id}", response_model=FireOut, status_code=202)
async def receive_hook(trigger_id: Id, request: Request) -> FireOut:
    """A signed call from another system: no login, the signature is the credential (see the README)."""
    body = await request.body()
    optio = request.app.state.optio
    kind, run_id = await run_in_threadpool(
        trigger_service.receive, optio.db, optio.auth.secrets.keyring, trigger_id,
        timestamp=request.headers.get("x-optio-timestamp"), signature=request.headers.get("x-optio-signature"),
        body=body)
    return FireOut(run_kind=kind, run_id=run_id)
