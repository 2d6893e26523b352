"""Browser sign-in: a server-rendered password form, OIDC, and sign-out.

The session cookie is HttpOnly (scripts cannot read it), SameSite=Lax (not sent on cross-site
posts) and Secure whenever the request came over https (or always, with OPTIO_COOKIE_SECURE=always).
"Came over https" is the connection's own scheme; `X-Forwarded-Proto` counts only from a proxy listed in
OPTIO_TRUSTED_PROXIES, which uvicorn applies before the request gets here.
Forms carry a CSRF token: before sign-in it is bound to a random pre-session cookie, afterwards to the
session itself, and a post without the matching token is refused.
"""

from __future__ import annotations

import html
import secrets
from typing import Any

import structlog
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from optio.api.deps import SESSION_COOKIE
from optio.errors import NotFound
from optio.security import tokens
from optio.server import Optio
from optio.services import audit, credentials, oidc, users

log = structlog.get_logger(__name__)
router = APIRouter(include_in_schema=False)
PRE_SESSION_COOKIE = "optio_login_csrf"
OIDC_COOKIE = "optio_oidc"


def _optio(request: Request) -> Optio:
    return request.app.state.optio


def _secure(request: Request) -> bool:
    mode = _optio(request).settings.cookie_secure
    if mode != "auto":
        return mode == "always"
    return request.url.scheme == "https"


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int,
                samesite: str = "lax") -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, secure=_secure(request),
                        samesite=samesite, path="/")  # type: ignore[arg-type]


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)} · Optio</title></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>",
        status_code=status, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                     "Content-Security-Policy": "default-src 'none'; form-action 'self'"},
    )


def _login_form(request: Request, error: str = "", status: int = 200) -> HTMLResponse:
    optio = _optio(request)
    nonce = secrets.token_urlsafe(32)
    csrf = tokens.csrf_token_for(nonce, optio.auth.session_secret)  # type: ignore[union-attr]
    sso = "<p><a href='/auth/oidc/login'>Sign in with single sign-on</a></p>" if oidc.configured(optio.settings) \
        else ""
    err = f"<p role='alert'>{html.escape(error)}</p>" if error else ""
    response = _page("Sign in", (
        f"{err}<form method='post' action='/login'>"
        f"<input type='hidden' name='csrf_token' value='{csrf}'>"
        "<label>Username <input name='username' autocomplete='username' required></label> "
        "<label>Password <input name='password' type='password' autocomplete='current-password' required></label> "
        f"<button type='submit'>Sign in</button></form>{sso}"
    ), status)
    _set_cookie(request, response, PRE_SESSION_COOKIE, nonce, 3600, samesite="strict")
    return response


def _start_session(request: Request, user: Any, via: str) -> RedirectResponse:
    optio = _optio(request)
    token = credentials.create_session(optio.db, user.id, optio.settings.session_ttl_s)
    try:
        with optio.db.read() as session:
            ws, _role = users.workspace_for(session, user.id, None)
    except NotFound:  # a new single sign-on user waits for an admin to add them to a workspace
        log.info("login without a workspace", user_id=user.id, via=via)
    else:
        audit.record(optio.db, workspace_id=ws.id, user_id=user.id, actor=user.username, action="login",
                     target_type="user", target_id=user.username, detail={"via": via})
    response = RedirectResponse("/", status_code=303)
    _set_cookie(request, response, SESSION_COOKIE, token, int(optio.settings.session_ttl_s))
    response.delete_cookie(PRE_SESSION_COOKIE, path="/")
    return response


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return _login_form(request)


@router.post("/login")
def login(
    request: Request,
    username: str = Form(default="", max_length=200),
    password: str = Form(default="", max_length=1000),
    csrf_token: str = Form(default="", max_length=200),
) -> Response:
    optio = _optio(request)
    nonce = request.cookies.get(PRE_SESSION_COOKIE)
    if not tokens.check_csrf(nonce, optio.auth.session_secret, csrf_token):  # type: ignore[union-attr]
        return _login_form(request, "Your sign-in form expired; try again.", status=403)
    user = users.check_password(optio.db, username, password)
    if user is None:
        return _login_form(request, "Wrong username or password.", status=401)
    return _start_session(request, user, "password")


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form(default="", max_length=200)) -> Response:
    optio = _optio(request)
    token = request.cookies.get(SESSION_COOKIE)
    given = csrf_token or request.headers.get("X-CSRF-Token")
    if token and not tokens.check_csrf(token, optio.auth.session_secret, given):  # type: ignore[union-attr]
        return _page("Sign out", "<p>Missing or wrong CSRF token.</p>", status=403)
    if token:
        credentials.end_session(optio.db, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/auth/oidc/login")
def oidc_login(request: Request) -> Response:
    optio = _optio(request)
    if not oidc.configured(optio.settings):
        raise oidc.OidcNotConfigured("single sign-on is not configured")
    redirect_uri = optio.settings.oidc_redirect_url or str(request.url_for("oidc_callback"))
    url, attempt = oidc.begin(optio.settings, redirect_uri)
    response = RedirectResponse(url, status_code=302)
    _set_cookie(request, response, OIDC_COOKIE, oidc.seal_attempt(attempt, optio.auth.session_secret),  # type: ignore[union-attr]
                oidc.STATE_TTL_S)
    return response


@router.get("/auth/oidc/callback", name="oidc_callback")
def oidc_callback(
    request: Request,
    code: str = Query(default="", max_length=4000),
    state: str = Query(default="", max_length=500),
    error: str = Query(default="", max_length=500),
) -> Response:
    optio = _optio(request)
    if not oidc.configured(optio.settings):
        raise oidc.OidcNotConfigured("single sign-on is not configured")
    if error or not code:
        raise oidc.OidcError(f"the identity provider refused the sign-in: {error or 'no code'}")
    attempt = oidc.open_attempt(request.cookies.get(OIDC_COOKIE), optio.auth.session_secret)  # type: ignore[union-attr]
    claims = oidc.finish(optio.settings, attempt, state, code)
    user = oidc.user_for_claims(optio.db, optio.settings, claims)
    response = _start_session(request, user, "oidc")
    response.delete_cookie(OIDC_COOKIE, path="/")
    return response
