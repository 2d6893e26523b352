"""The caller's account, workspaces and workspace members, and a server administrator's user management.

A workspace admin manages roles in its own workspace and addresses only people it already shares a
workspace with (anyone else is "not found", like a name nobody has). Creating users and resetting another
person's password need a server administrator; a membership route never touches a password.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request, Response

from optio.api.account_schemas import (
    USERNAME_PATTERN,
    MemberOut,
    MemberSet,
    MemberSetOut,
    PasswordChange,
    PasswordIn,
    UserOut,
    WhoAmI,
    WorkspaceCreate,
    WorkspaceOut,
)
from optio.api.deps import SESSION_COOKIE, Ctx, Forbidden, get_admin_ctx, get_ctx, get_self_ctx
from optio.api.errors import ERROR_RESPONSES, error_doc
from optio.errors import NotFound
from optio.services import audit, credentials, users

router = APIRouter(tags=["account"], responses=ERROR_RESPONSES)
Username = Path(pattern=USERNAME_PATTERN, max_length=200)


def _workspaces(ctx: Ctx) -> list[WorkspaceOut]:
    with ctx.db.read() as session:
        return [WorkspaceOut(id=ws.id, slug=ws.slug, name=ws.name, role=role)  # type: ignore[arg-type]
                for ws, role in users.memberships_of(session, ctx.user_id or 0)]


@router.get("/api/me", response_model=WhoAmI)
def whoami(ctx: Ctx = Depends(get_self_ctx)) -> WhoAmI:
    user = users.get_user(ctx.db, ctx.user_id or 0)
    mine = _workspaces(ctx)
    current = next(w for w in mine if w.id == ctx.workspace_id)
    return WhoAmI(user_id=user.id, username=user.username, display_name=user.display_name, email=user.email,
                  workspace=current, workspaces=mine, auth=ctx.via, server_admin=user.is_server_admin)


@router.put("/api/me/password", status_code=204, response_class=Response, responses={
    429: error_doc("Too many attempts from this client; see Retry-After")})
def set_password(body: PasswordChange, request: Request, ctx: Ctx = Depends(get_self_ctx)) -> Response:
    """Change your own password (for the web UI), giving the current one; your other sessions end."""
    keep = request.cookies.get(SESSION_COOKIE) if ctx.via == "session" else None
    ended = users.change_own_password(ctx.db, ctx.user_id or 0, body.current_password, body.password,
                                      keep_session=keep)
    audit.record(ctx.db, workspace_id=ctx.workspace_id, user_id=ctx.user_id, actor=ctx.username,
                 action="user.password_change", target_type="user", target_id=ctx.username,
                 detail={"sessions_ended": ended})
    return Response(status_code=204)


def _require_server_admin(ctx: Ctx, refusal: Exception | None = None) -> None:
    with ctx.db.read() as session:
        if not users.is_server_admin(session, ctx.user_id):
            raise refusal or Forbidden("this needs a server administrator")


@router.get("/api/users", response_model=list[UserOut])
def list_users(ctx: Ctx = Depends(get_self_ctx)) -> list[UserOut]:
    """Every account on this server (server administrators only)."""
    _require_server_admin(ctx)
    with ctx.db.read() as session:
        return [UserOut(id=u.id, username=u.username, display_name=u.display_name, email=u.email,
                        server_admin=u.is_server_admin, sso=u.oidc_subject is not None,
                        workspaces=dict(memberships))  # type: ignore[arg-type]
                for u, memberships in users.list_users(session)]


@router.put("/api/users/{username}/password", status_code=204, response_class=Response)
def reset_password(body: PasswordIn, username: str = Path(pattern=USERNAME_PATTERN, max_length=200),
                   ctx: Ctx = Depends(get_self_ctx)) -> Response:
    """Set another person's password (server administrators only); all of their browser sessions end."""
    # To anyone else no account is addressable here: "not found", whether or not the name exists.
    _require_server_admin(ctx, NotFound(f"user {username!r} not found", field="username"))
    user = users.reset_password(ctx.db, username, body.password)
    audit.record(ctx.db, workspace_id=ctx.workspace_id, user_id=ctx.user_id, actor=ctx.username,
                 action="user.password_reset", target_type="user", target_id=user.username)
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
    """Add someone you share a workspace with to this one, or change their role.

    Anyone else is 404, the same as a name nobody has. A server administrator may also create the user
    here. Passwords are refused: the owner changes theirs at /api/me/password, a server administrator
    resets one at /api/users/{username}/password.
    """
    if body.password is not None:
        raise Forbidden("passwords are never set through a membership: the user changes their own "
                        "(PUT /api/me/password) or a server administrator resets it "
                        "(PUT /api/users/{username}/password)", field="password")
    user, role, previous, created = users.set_member(ctx.db, ctx.workspace_id, ctx.user_id, username, body.role)
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
