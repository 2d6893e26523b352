"""Repos."""

from __future__ import annotations

from urllib.parse import urlparse

from fastapi import APIRouter, Depends

from optio.api.deps import Ctx, auth_of, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.schemas import RepoCreate, RepoOut, RepoUpdate
from optio.api.views import repo_out
from optio.control.ports import UnknownForge
from optio.errors import Invalid
from optio.forge.hosted import AccessChecker
from optio.security.ssrf import UnsafeURLError, check_url
from optio.services import repos as repo_service
from optio.services.remotes import LocalRemotePolicy

router = APIRouter(prefix="/api/repos", tags=["repos"], responses=ERROR_RESPONSES)


def local_remote_policy(ctx: Ctx) -> LocalRemotePolicy:
    settings = ctx.optio.settings
    return LocalRemotePolicy.of(settings.allowed_local_remote_roots, settings.resolved_data_dir)


@router.post("", response_model=RepoOut, status_code=201)
def add_repo(body: RepoCreate, ctx: Ctx = Depends(get_ctx)) -> RepoOut:
    """Register a git remote. Local paths and file:// URLs only under OPTIO_LOCAL_REMOTE_ROOTS (see README)."""
    parsed = urlparse(body.remote_url)
    if parsed.scheme in ("http", "https", "ssh", "git"):
        # Optio will fetch from and push to this forge: refuse internal addresses unless allowlisted. The guard
        # speaks http(s); for ssh:// and git:// only the host matters, so it is checked as one.
        url = body.remote_url if parsed.scheme in ("http", "https") else f"http://{parsed.hostname or ''}/"
        try:
            check_url(url, allowlist=ctx.optio.settings.outbound_allowlist)
        except UnsafeURLError as exc:
            raise Invalid(str(exc), field="remote_url") from None
    credential = None
    if body.credential_secret:
        # Read now so a private remote's default branch can be detected; the forge reads it again on each use.
        credential = auth_of(ctx.optio).secrets.env_for(ctx.workspace_id, [body.credential_secret]).get(
            body.credential_secret
        )
        if credential is None:
            raise Invalid(f"no secret named {body.credential_secret!r} in this workspace", field="credential_secret")
    secrets = auth_of(ctx.optio).secrets
    return repo_out(repo_service.add_repo(ctx.db, ctx.workspace_id, body.model_dump(), local_remote_policy(ctx),
                                          credential=credential, allowlist=ctx.optio.settings.outbound_allowlist,
                                          access_checker=lambda kind: access_checker(ctx, kind),
                                          secret_of=lambda name: secrets.env_for(ctx.workspace_id, [name]).get(name)))


def access_checker(ctx: Ctx, kind: str) -> AccessChecker | None:
    """The hosted forge's adapter when it can check access (a forge kind this server does not run: None)."""
    try:
        forge = ctx.optio.ctx.forges.get(kind)
    except UnknownForge:
        raise Invalid(f"this server has no {kind} forge configured", field="forge") from None
    return forge if hasattr(forge, "check_access") else None  # type: ignore[return-value]


@router.get("", response_model=list[RepoOut])
def list_repos(ctx: Ctx = Depends(get_ctx)) -> list[RepoOut]:
    return [repo_out(r) for r in repo_service.list_repos(ctx.db, ctx.workspace_id)]


@router.get("/{repo_ref}", response_model=RepoOut)
def get_repo(repo_ref: str, ctx: Ctx = Depends(get_ctx)) -> RepoOut:
    with ctx.db.read() as session:
        return repo_out(repo_service.find_repo(session, ctx.workspace_id, repo_ref))


@router.delete("/{repo_ref}", status_code=204)
def remove_repo(repo_ref: str, ctx: Ctx = Depends(get_ctx)) -> None:
    """Remove a repo, its tasks' history and its git cache. Refused (409) while any of its tasks is unfinished."""
    repo_service.remove_repo(ctx.db, ctx.workspace_id, repo_ref, ctx.optio.ctx.worktrees)


@router.patch("/{repo_ref}", response_model=RepoOut)
def update_repo(repo_ref: str, body: RepoUpdate, ctx: Ctx = Depends(get_ctx)) -> RepoOut:
    """Change a repo's settings (only the fields sent). A new default branch must exist on the remote."""
    secrets = auth_of(ctx.optio).secrets
    return repo_out(repo_service.update_repo(
        ctx.db, ctx.workspace_id, repo_ref, body.model_dump(exclude_unset=True),
        credential_of=lambda name: secrets.env_for(ctx.workspace_id, [name]).get(name),
        allowlist=ctx.optio.settings.outbound_allowlist))
