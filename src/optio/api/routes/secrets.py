"""Workspace and repo secrets. Values go in and never come out: every response carries names only."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Response

from optio.api.account_schemas import SECRET_NAME_PATTERN, KeyRotationOut, SecretOut, SecretSet, SecretSetOut
from optio.api.deps import Ctx, Forbidden, get_admin_ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.services import users
from optio.services.repos import find_repo
from optio.services.secrets import SecretStore

router = APIRouter(tags=["secrets"], responses=ERROR_RESPONSES)
SecretName = Path(pattern=SECRET_NAME_PATTERN, max_length=128)
RepoRef = Query(default=None, min_length=1, max_length=200, description="Repo name or id (repo-scoped secret)")


def _store(ctx: Ctx) -> SecretStore:
    assert ctx.optio.auth is not None
    return ctx.optio.auth.secrets


def _repo_id(ctx: Ctx, ref: str | None) -> int | None:
    if ref is None:
        return None
    with ctx.db.read() as session:
        return find_repo(session, ctx.workspace_id, ref).id


def secret_out(row: object) -> SecretOut:
    return SecretOut.model_validate(row)


@router.get("/api/secrets", response_model=list[SecretOut])
def list_secrets(repo: str | None = RepoRef, ctx: Ctx = Depends(get_ctx)) -> list[SecretOut]:
    """Names, scopes and key versions of this workspace's secrets (values are never returned)."""
    return [secret_out(r) for r in _store(ctx).list(ctx.workspace_id, repo_id=_repo_id(ctx, repo))]


@router.put("/api/secrets/{name}", response_model=SecretSetOut)
def set_secret(body: SecretSet, name: str = SecretName, ctx: Ctx = Depends(get_admin_ctx)) -> SecretSetOut:
    row, created = _store(ctx).set(ctx.workspace_id, name, body.value, repo_id=_repo_id(ctx, body.repo),
                                   user_id=ctx.user_id)
    return SecretSetOut(**secret_out(row).model_dump(), created=created)


@router.delete("/api/secrets/{name}", status_code=204, response_class=Response)
def delete_secret(name: str = SecretName, repo: str | None = RepoRef, ctx: Ctx = Depends(get_admin_ctx)) -> Response:
    _store(ctx).delete(ctx.workspace_id, name, repo_id=_repo_id(ctx, repo))
    return Response(status_code=204)


@router.post("/api/admin/encryption-key/rotate", response_model=KeyRotationOut, tags=["admin"])
def rotate_encryption_key(ctx: Ctx = Depends(get_admin_ctx)) -> KeyRotationOut:
    """Re-encrypt every secret of every workspace under a new key, then drop the old keys.

    The key is instance-wide, so only an admin of the default workspace may rotate it.
    """
    if ctx.workspace_slug != users.DEFAULT_WORKSPACE_SLUG:
        raise Forbidden("rotating the encryption key needs the admin role in the default workspace")
    result = _store(ctx).rotate_key()
    return KeyRotationOut(previous_versions=result.previous_versions, current_version=result.current_version,
                          reencrypted=result.reencrypted)
