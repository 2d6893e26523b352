"""Who is looking at a page, in which workspace, and whether they may change things.

Pages use the browser session (`/login`) like the API's cookie path in `optio.api.deps`; without one a page
redirects to `/login`. Every form carries the session's CSRF token (`csrf_token`), checked on each post; with
authentication disabled the request guard's custom-header rule applies instead (`app.js` submits forms with it).
Viewers see no mutating controls, and a post from one anyway is a 403.

A person in several workspaces picks the one the pages show in the header (`POST /workspace`); the pick is a
cookie signed with the session secret and bound to the session (`optio.api.deps.workspace_choice_cookie`), read
by every page and by the API for this browser, so the pages' own API calls and event stream follow it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from optio.api.deps import SESSION_COOKIE, Ctx, auth_of, session_workspace
from optio.errors import AppError, NotFound
from optio.security import tokens
from optio.server import Optio
from optio.services import credentials, users
from optio.services.credentials import Identity


class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to /login."""


class PageForbidden(AppError):
    status = 403
    code = "forbidden"


@dataclass(frozen=True)
class Viewer:
    """The signed-in person; `ctx` is None while they belong to no workspace yet."""

    identity: Identity
    csrf: str
    ctx: Ctx | None
    auth_disabled: bool
    # Every workspace the person belongs to, as (slug, name, role): the header's switcher.
    workspaces: tuple[tuple[str, str, str], ...] = ()

    @property
    def role(self) -> str:
        return self.ctx.role if self.ctx else ""

    @property
    def can_write(self) -> bool:
        return self.ctx is not None and users.role_at_least(self.ctx.role, "member")

    @property
    def is_admin(self) -> bool:
        return self.ctx is not None and users.role_at_least(self.ctx.role, "admin")

    def workspace(self) -> Ctx:
        if self.ctx is None:
            raise NotFound("you are not a member of any workspace yet: ask a server administrator to add you")
        return self.ctx


def viewer_of(request: Request) -> Viewer:
    optio: Optio = request.app.state.optio
    auth = auth_of(optio)
    token = ""
    if not optio.settings.auth_enabled:
        identity: Identity | None = Identity(user_id=auth.bootstrap.user_id, username="admin", via="disabled")
    else:
        token = request.cookies.get(SESSION_COOKIE) or ""
        identity = credentials.identify_session(optio.db, token) if token else None
    if identity is None:
        raise SignInRequired
    ctx: Ctx | None = None
    with optio.db.read() as session:
        try:
            ws, role = session_workspace(session, request, identity, None)
        except NotFound:
            pass
        else:
            ctx = Ctx(optio=optio, workspace_id=ws.id, user_id=identity.user_id, username=identity.username,
                      role=role, workspace_slug=ws.slug, via="session")
        memberships = tuple((w.slug, w.name, r) for w, r in users.memberships_of(session, identity.user_id))
    csrf = tokens.csrf_token_for(token, auth.session_secret) if token else ""
    viewer = Viewer(identity=identity, csrf=csrf, ctx=ctx, auth_disabled=not optio.settings.auth_enabled,
                    workspaces=memberships)
    if ctx is not None:
        request.state.ctx = ctx
    return viewer


def self_of(request: Request, csrf_token: str) -> Ctx:
    """The context of a post about the person's own account (their API keys): a right CSRF token, any role,
    as the API's `get_self_ctx` allows a viewer too."""
    viewer = viewer_of(request)
    if not viewer.auth_disabled:
        token = request.cookies.get(SESSION_COOKIE)
        if not tokens.check_csrf(token, auth_of(request.app.state.optio).session_secret, csrf_token):
            raise PageForbidden("missing or wrong CSRF token: reload the page and try again")
    return viewer.workspace()


def writer_of(request: Request, csrf_token: str) -> Ctx:
    """The workspace context of a post that may change state: a right CSRF token and at least the member role."""
    ctx = self_of(request, csrf_token)
    if not users.role_at_least(ctx.role, "member"):
        raise PageForbidden(f"this needs the member role in workspace {ctx.workspace_slug!r}; you are {ctx.role}")
    return ctx
