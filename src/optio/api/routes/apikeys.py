"""Your personal API keys: shown once at creation, stored hashed, revocable, with last-used time."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from optio.api.account_schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from optio.api.deps import Ctx, get_self_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.schemas import Id
from optio.services import credentials

router = APIRouter(prefix="/api/apikeys", tags=["api keys"], responses=ERROR_RESPONSES)


def key_out(key: object) -> ApiKeyOut:
    return ApiKeyOut.model_validate(key)


@router.get("", response_model=list[ApiKeyOut])
def list_keys(ctx: Ctx = Depends(get_self_ctx)) -> list[ApiKeyOut]:
    return [key_out(k) for k in credentials.list_api_keys(ctx.db, ctx.user_id or 0)]


@router.post("", response_model=ApiKeyCreated, status_code=201)
def create_key(body: ApiKeyCreate, ctx: Ctx = Depends(get_self_ctx)) -> ApiKeyCreated:
    key, plaintext = credentials.create_api_key(ctx.db, ctx.user_id or 0, body.name)
    return ApiKeyCreated(**key_out(key).model_dump(), key=plaintext)


@router.delete("/{key_id}", response_model=ApiKeyOut)
def revoke_key(key_id: Id, ctx: Ctx = Depends(get_self_ctx)) -> ApiKeyOut:
    """Revoke one of your keys; it stops working at once and stays listed as revoked."""
    return key_out(credentials.revoke_api_key(ctx.db, ctx.user_id or 0, key_id))
