"""Request-scoped dependencies: who is calling, in which workspace, and may they do this.

Every API route takes one of these, so authentication, tenancy and roles are decided in one place:

* `get_ctx`: any member for reads (GET/HEAD/OPTIONS); member or admin for anything that changes
  state. Viewers can see everything in their workspace and change nothing.
* `get_admin_ctx`: admins only: secrets (set/delete), members and roles, the audit log, key rotation.
* `get_self_ctx`: any member, whatever the method: things a person does to their own account
  (their API keys, their password, whoami), which a viewer must be able to do too.

Credentials are an API key (`Authorization: Bearer optio_...`) or the browser session cookie. A
cookie-authenticated request that changes state must also carry the session's CSRF token in
`X-CSRF-Token`, since a browser attaches cookies to cross-site requests by itself.

The workspace is the `X-Optio-Workspace` slug, else the caller's default. A workspace the caller does
not belong to is "not found", exactly like one that does not exist. With `OPTIO_AUTH=disabled` every
request acts as the bootstrap admin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Header, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from optio.errors import AppError
from optio.security import tokens
from optio.server import Optio
from optio.services import credentials, users
from optio.services.auth_state import AuthState
from optio.services.credentials import Identity
from optio.store.db import Database

SESSION_COOKIE = "optio_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer_scheme = HTTPBearer(auto_error=False, description="A personal API key: `optio_...`")
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="Browser session (see /login)")


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


def auth_of(optio: Optio) -> AuthState:
    """The server's auth state, which start-up sets before any request is served."""
    if optio.auth is None:
        raise RuntimeError("the server's auth state is not set up")
    return optio.auth


@dataclass(frozen=True)
class Ctx:
    optio: Optio
    workspace_id: int
    user_id: int | None = None
    username: str = ""
    role: str = "admin"
    workspace_slug: str = ""
    via: str = ""

    @property
    def db(self) -> Database:
        return self.optio.db


def identify(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None,
    cookie: str | None,
) -> Identity:
    optio: Optio = request.app.state.optio
    if not optio.settings.auth_enabled:
        return Identity(user_id=auth_of(optio).bootstrap.user_id, username="admin", via="disabled")
    if bearer is not None:
        identity = credentials.identify_api_key(optio.db, bearer.credentials)
        if identity is None:
            raise Unauthorized("invalid or revoked API key")
        return identity
    if cookie:
        identity = credentials.identify_session(optio.db, cookie)
        if identity is None:
            raise Unauthorized("session expired; sign in again at /login")
        if request.method not in SAFE_METHODS and not tokens.check_csrf(
            cookie, auth_of(optio).session_secret, request.headers.get(CSRF_HEADER)
        ):
            raise Forbidden(f"missing or wrong {CSRF_HEADER} header for a session-authenticated change")
        return identity
    raise Unauthorized("authentication required: send 'Authorization: Bearer <API key>' or sign in")


def _authorize(needed: str | None) -> Callable[..., Ctx]:
    def dependency(
        request: Request,
        x_optio_workspace: str | None = Header(default=None, max_length=64, description="Workspace slug"),
        bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
        cookie: str | None = Depends(cookie_scheme),
    ) -> Ctx:
        optio: Optio = request.app.state.optio
        identity = identify(request, bearer, cookie)
        with optio.db.read() as session:
            ws, role = users.workspace_for(session, identity.user_id, x_optio_workspace)
        required = needed or ("viewer" if request.method in SAFE_METHODS else "member")
        if not users.role_at_least(role, required):
            raise Forbidden(f"this needs the {required} role in workspace {ws.slug!r}; you are {role}")
        ctx = Ctx(optio=optio, workspace_id=ws.id, user_id=identity.user_id, username=identity.username,
                  role=role, workspace_slug=ws.slug, via=identity.via)
        request.state.ctx = ctx
        return ctx

    return dependency


get_ctx = _authorize(None)
get_admin_ctx = _authorize("admin")
get_self_ctx = _authorize("viewer")
