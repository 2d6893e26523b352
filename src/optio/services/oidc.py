"""OpenID Connect sign-in (authorization code flow with PKCE) against any standards-compliant provider.

The provider is configured by issuer URL, client id and secret; everything else comes from its
discovery document. Every call to the provider goes through the SSRF guard, so an issuer on an internal
address must be allowlisted explicitly. The ID token is checked the way the spec asks: signature
against the provider's published keys, issuer, audience (and authorized party when there are several
audiences), expiry, and the nonce bound to this browser's sign-in attempt. Token helpers come from
authlib and its JOSE library, joserfc.

The per-attempt state (state, nonce, PKCE verifier) rides in a short-lived HMAC-signed cookie, so no
server-side storage is needed and a callback cannot be replayed in another browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from optio.config import Settings
from optio.errors import AppError
from optio.security.ssrf import UnsafeURLError, check_url, guarded_client
from optio.store import workspaces
from optio.store.db import Database
from optio.store.models import Membership, User

STATE_TTL_S = 600
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]


class OidcError(AppError):
    status = 401
    code = "oidc_failed"


class OidcNotConfigured(AppError):
    status = 404
    code = "not_found"


@dataclass(frozen=True)
class Attempt:
    state: str
    nonce: str
    verifier: str
    redirect_uri: str


def configured(settings: Settings) -> bool:
    return bool(settings.oidc_issuer and settings.oidc_client_id)


def _client(settings: Settings) -> httpx.Client:
    return guarded_client(settings.outbound_allowlist, timeout=10.0, follow_redirects=False)


def discover(settings: Settings) -> dict[str, Any]:
    issuer = (settings.oidc_issuer or "").rstrip("/")
    try:
        check_url(issuer, allowlist=settings.outbound_allowlist)
        with _client(settings) as client:
            resp = client.get(issuer + "/.well-known/openid-configuration")
            resp.raise_for_status()
            meta = resp.json()
    except UnsafeURLError as exc:
        raise OidcError(f"OIDC issuer refused: {exc}") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise OidcError(f"OIDC discovery failed: {exc}") from None
    if not isinstance(meta, dict) or meta.get("issuer", "").rstrip("/") != issuer:
        raise OidcError("OIDC discovery document names a different issuer")
    for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(meta.get(field), str):
            raise OidcError(f"OIDC discovery document lacks {field}")
    return meta


def begin(settings: Settings, redirect_uri: str) -> tuple[str, Attempt]:
    """The provider URL to send the browser to, and the attempt to remember in a signed cookie."""
    meta = discover(settings)
    attempt = Attempt(state=generate_token(32), nonce=generate_token(32), verifier=generate_token(64),
                      redirect_uri=redirect_uri)
    params = {
        "response_type": "code", "client_id": settings.oidc_client_id, "redirect_uri": redirect_uri,
        "scope": "openid email profile", "state": attempt.state, "nonce": attempt.nonce,
        "code_challenge": create_s256_code_challenge(attempt.verifier), "code_challenge_method": "S256",
    }
    sep = "&" if "?" in meta["authorization_endpoint"] else "?"
    return meta["authorization_endpoint"] + sep + urlencode(params), attempt


def seal_attempt(attempt: Attempt, secret: bytes) -> str:
    payload = json.dumps({**attempt.__dict__, "exp": time.time() + STATE_TTL_S}).encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    mac = base64.urlsafe_b64encode(hmac.new(secret, b"oidc\x00" + body.encode(), hashlib.sha256).digest())
    return body + "." + mac.decode().rstrip("=")


def open_attempt(value: str | None, secret: bytes) -> Attempt:
    if not value or "." not in value:
        raise OidcError("sign-in attempt not found (cookies disabled or it expired); start again")
    body, mac = value.rsplit(".", 1)
    expected = base64.urlsafe_b64encode(hmac.new(secret, b"oidc\x00" + body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.decode().rstrip("="), mac):
        raise OidcError("sign-in attempt was tampered with")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    if data.pop("exp", 0) < time.time():
        raise OidcError("sign-in attempt expired; start again")
    return Attempt(**data)


def finish(settings: Settings, attempt: Attempt, state: str, code: str) -> dict[str, Any]:
    """Exchange the code and return the verified ID token claims."""
    if not hmac.compare_digest(attempt.state, state):
        raise OidcError("state does not match this sign-in attempt")
    meta = discover(settings)
    try:
        with _client(settings) as client:
            resp = client.post(
                meta["token_endpoint"],
                data={"grant_type": "authorization_code", "code": code, "redirect_uri": attempt.redirect_uri,
                      "code_verifier": attempt.verifier},
                auth=(settings.oidc_client_id or "", settings.oidc_client_secret or ""),
                headers={"Accept": "application/json"},
            )
            if resp.status_code != 200:
                raise OidcError(f"token endpoint answered {resp.status_code}")
            id_token = resp.json().get("id_token")
            jwks = client.get(meta["jwks_uri"]).raise_for_status().json()
    except UnsafeURLError as exc:
        raise OidcError(f"OIDC endpoint refused: {exc}") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise OidcError(f"OIDC token exchange failed: {exc}") from None
    if not isinstance(id_token, str):
        raise OidcError("token response carries no id_token")
    return verify_id_token(id_token, jwks, issuer=meta["issuer"], client_id=settings.oidc_client_id or "",
                           nonce=attempt.nonce)


def verify_id_token(id_token: str, jwks: dict[str, Any], *, issuer: str, client_id: str, nonce: str,
                    leeway_s: int = 60) -> dict[str, Any]:
    try:
        keys = KeySet.import_key_set(jwks)
        token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
    except (JoseError, ValueError, TypeError) as exc:
        raise OidcError(f"ID token signature is not valid: {exc}") from None
    claims = token.claims
    registry = jwt.JWTClaimsRegistry(
        leeway=leeway_s,
        iss={"essential": True, "value": issuer},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise OidcError(f"ID token rejected: {exc}") from None
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []
    if client_id not in audiences:
        raise OidcError("ID token rejected: it was issued for another client (audience)")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise OidcError("ID token rejected: authorized party is not this client")
    return dict(claims)


def user_for_claims(db: Database, settings: Settings, claims: dict[str, Any]) -> User:
    """The Optio user of this (issuer, subject); created on first sign-in with the configured default role."""
    issuer, subject = str(claims["iss"]), str(claims["sub"])
    with db.write() as session:
        user = session.scalar(select(User).where(User.oidc_issuer == issuer, User.oidc_subject == subject))
        if user is not None:
            return user
        base = str(claims.get("preferred_username") or claims.get("email") or f"oidc-{subject}")[:180]
        username, n = base, 1
        while session.scalar(select(User.id).where(User.username == username)) is not None:
            n += 1
            username = f"{base}-{n}"
        ws = workspaces.ensure_default(session)
        user = User(username=username, display_name=str(claims.get("name") or username)[:200],
                    email=claims.get("email") if isinstance(claims.get("email"), str) else None,
                    oidc_issuer=issuer, oidc_subject=subject, default_workspace_id=ws.id)
        session.add(user)
        try:
            session.flush()
        except IntegrityError:
            raise OidcError("this identity was just registered concurrently; sign in again") from None
        session.add(Membership(workspace_id=ws.id, user_id=user.id, role=settings.oidc_default_role))
    return user
