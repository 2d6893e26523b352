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

The workspace is the `X-Optio-Workspace` slug, else (for a browser) the one picked in the dashboard's header
(a cookie signed with the server's session secret and bound to the session), else the caller's default. A
workspace the caller does not belong to is "not found", exactly like one that does not exist. The event stream
also takes a `workspace` query parameter, since a browser's `EventSource` cannot send headers. With
`OPTIO_AUTH=disabled` every request acts as the bootstrap admin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Header, Query, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from optio.errors import AppError, NotFound
from optio.security import tokens
from optio.server import Optio
from optio.services import credentials, users
from optio.services.auth_state import AuthState
from optio.services.credentials import Identity
from optio.store.db import Database
from optio.store.session import Session

SESSION_COOKIE = "optio_session"
WORKSPACE_COOKIE = "optio_workspace"
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


def _choice_mac(secret: bytes | str, session_token: str, slug: str) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    mac = hmac.new(key, b"optio-workspace\x00" + session_token.encode() + b"\x00" + slug.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


def workspace_choice_cookie(optio: Optio, session_token: str, slug: str) -> str:
    """The cookie value that remembers a browser session's workspace: the slug and a MAC binding it to the
    session, so it can be neither forged nor carried into another person's session."""
    return f"{slug}.{_choice_mac(auth_of(optio).session_secret, session_token, slug)}"


def chosen_workspace(request: Request) -> str | None:
    """The workspace this browser session picked in the dashboard, when its cookie verifies (else None)."""
    raw = request.cookies.get(WORKSPACE_COOKIE) or ""
    slug, _, mac = raw.rpartition(".")
    if not slug or not mac:
        return None
    optio: Optio = request.app.state.optio
    token = request.cookies.get(SESSION_COOKIE) or ""
    expected = _choice_mac(auth_of(optio).session_secret, token, slug)
    return slug if hmac.compare_digest(expected.encode("ascii"), mac.encode("utf-8", "replace")) else None


def session_workspace(session: Session, request: Request, identity: Identity, explicit: str | None
                      ) -> tuple[Any, str]:
    """The workspace a request acts in: the `explicit` slug (header or query: not a member is "not found"),
    else a browser session's pick (ignored once the person left that workspace), else their default."""
    if explicit is None and identity.via in ("session", "disabled"):
        picked = chosen_workspace(request)
        if picked is not None:
            try:
                return users.workspace_for(session, identity.user_id, picked)
            except NotFound:
                pass
    return users.workspace_for(session, identity.user_id, explicit)


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
        return _ctx_of(request, needed, identify(request, bearer, cookie), x_optio_workspace)

    return dependency


def _ctx_of(request: Request, needed: str | None, identity: Identity, explicit: str | None) -> Ctx:
    optio: Optio = request.app.state.optio
    with optio.db.read() as session:
        ws, role = session_workspace(session, request, identity, explicit)
    required = needed or ("viewer" if request.method in SAFE_METHODS else "member")
    if not users.role_at_least(role, required):
        raise Forbidden(f"this needs the {required} role in workspace {ws.slug!r}; you are {role}")
    ctx = Ctx(optio=optio, workspace_id=ws.id, user_id=identity.user_id, username=identity.username,
              role=role, workspace_slug=ws.slug, via=identity.via)
    request.state.ctx = ctx
    return ctx


def get_stream_ctx(
    request: Request,
    workspace: str | None = Query(default=None, max_length=64,
                                  description="Workspace slug (for `EventSource`, which cannot send headers)"),
    x_optio_workspace: str | None = Header(default=None, max_length=64, description="Workspace slug"),
    bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
    cookie: str | None = Depends(cookie_scheme),
) -> Ctx:
    """`get_ctx` for the event stream: the workspace may also be named by the `workspace` query parameter."""
    return _ctx_of(request, None, identify(request, bearer, cookie), x_optio_workspace or workspace)


get_ctx = _authorize(None)
get_admin_ctx = _authorize("admin")
get_self_ctx = _authorize("viewer")
