"""The caller's account, workspaces and workspace members."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Response

from optio.api.account_schemas import (
    USERNAME_PATTERN,
    MemberOut,
    MemberSet,
    MemberSetOut,
    PasswordIn,
    WhoAmI,
    WorkspaceCreate,
    WorkspaceOut,
)
from optio.api.deps import Ctx, get_admin_ctx, get_ctx, get_self_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.services import audit, credentials, users
from optio.store.models import User

router = APIRouter(tags=["account"], responses=ERROR_RESPONSES)
Username = Path(pattern=USERNAME_PATTERN, max_length=200)


def _workspaces(ctx: Ctx) -> list[WorkspaceOut]:
    with ctx.db.read() as session:
        return [WorkspaceOut(id=ws.id, slug=ws.slug, name=ws.name, role=role)  # type: ignore[arg-type]
                for ws, role in users.memberships_of(session, ctx.user_id or 0)]


@router.get("/api/me", response_model=WhoAmI)
def whoami(ctx: Ctx = Depends(get_self_ctx)) -> WhoAmI:
    with ctx.db.read() as session:
        user = session.get(User, ctx.user_id)
    assert user is not None
    mine = _workspaces(ctx)
    current = next(w for w in mine if w.id == ctx.workspace_id)
    return WhoAmI(user_id=user.id, username=user.username, display_name=user.display_name, email=user.email,
                  workspace=current, workspaces=mine, auth=ctx.via)


@router.put("/api/me/password", status_code=204, response_class=Response)
def set_password(body: PasswordIn, ctx: Ctx = Depends(get_self_ctx)) -> Response:
    """Set your own password, for signing in to the web UI."""
    users.set_password(ctx.db, ctx.user_id or 0, body.password)
    return Response(status_code=204)


@router.get("/api/workspaces", response_model=list[WorkspaceOut])
def list_workspaces(ctx: Ctx = Depends(get_self_ctx)) -> list[WorkspaceOut]:
    """The workspaces you belong to, with your role in each."""
    return _workspaces(ctx)


@router.post("/api/workspaces", response_model=WorkspaceOut, status_code=201)
def create_workspace(body: WorkspaceCreate, ctx: Ctx = Depends(get_admin_ctx)) -> WorkspaceOut:
    """Admins create workspaces; the creator becomes the new workspace's admin."""
    ws = users.create_workspace(ctx.db, ctx.user_id or 0, body.slug, body.name)
    audit.record(ctx.db, workspace_id=ws.id, user_id=ctx.user_id, actor=ctx.username, action="workspace.create",
                 target_type="workspace", target_id=ws.slug)
    return WorkspaceOut(id=ws.id, slug=ws.slug, name=ws.name, role="admin")


@router.get("/api/members", response_model=list[MemberOut])
def list_members(ctx: Ctx = Depends(get_ctx)) -> list[MemberOut]:
    with ctx.db.read() as session:
        return [MemberOut(user_id=u.id, username=u.username, display_name=u.display_name, role=role)  # type: ignore[arg-type]
                for u, role in users.list_members(session, ctx.workspace_id)]


@router.put("/api/members/{username}", response_model=MemberSetOut)
def set_member(body: MemberSet, username: str = Username, ctx: Ctx = Depends(get_admin_ctx)) -> MemberSetOut:
    """Add a user to this workspace (creating the user if new) or change their role."""
    user, role, previous, created = users.set_member(ctx.db, ctx.workspace_id, username, body.role,
                                                      password=body.password)
    key = None
    if created and body.create_api_key:
        _, key = credentials.create_api_key(ctx.db, user.id, "initial")
    audit.record(ctx.db, workspace_id=ctx.workspace_id, user_id=ctx.user_id, actor=ctx.username,
                 action="member.role_change" if previous else "member.add", target_type="user",
                 target_id=user.username, detail={"from": previous, "to": role, "created": created})
    return MemberSetOut(user_id=user.id, username=user.username, display_name=user.display_name,
                        role=role, created=created, previous_role=previous, api_key=key)  # type: ignore[arg-type]


@router.delete("/api/members/{username}", status_code=204, response_class=Response)
def remove_member(username: str = Username, ctx: Ctx = Depends(get_admin_ctx)) -> Response:
    user = users.remove_member(ctx.db, ctx.workspace_id, username)
    audit.record(ctx.db, workspace_id=ctx.workspace_id, user_id=ctx.user_id, actor=ctx.username,
                 action="member.remove", target_type="user", target_id=user.username)
    return Response(status_code=204)
