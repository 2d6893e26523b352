"""OpenID Connect sign-in (authorization code flow with PKCE) against any standards-compliant provider.

The provider is configured by issuer URL, client id and secret; everything else comes from its
discovery document. Every call to the provider goes through the SSRF guard, so an issuer on an internal
address must be allowlisted explicitly. The ID token is checked the way the spec asks: signature
against the provider's published keys, issuer, audience (and authorized party when there are several
audiences), expiry, and the nonce bound to this browser's sign-in attempt. Token helpers come from
authlib and its JOSE library, joserfc.

The per-attempt state (state, nonce, PKCE verifier) rides in a short-lived HMAC-signed cookie, so no
server-side storage is needed and a callback cannot be replayed in another browser.

Who may come in, and as whom: a person is bound to the provider's (issuer, subject), never to a name or
an email, so a later sign-in finds the same account whatever the claims say. Every sign-in needs an email
the provider has verified (`email_verified`), in `OPTIO_OIDC_ALLOWED_DOMAINS` when that is set. The
username of a new account is that verified email, or an opaque `oidc-<hash of issuer and subject>` when the
email is taken or unusable as a name: never `preferred_username`, which the person chooses, so nobody can
take a name an admin means to grant a role to. A new account joins no workspace unless
`OPTIO_OIDC_DEFAULT_WORKSPACE` names one (with `OPTIO_OIDC_DEFAULT_ROLE`); otherwise an admin adds it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

import httpx
import structlog
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from optio.config import Settings
from optio.errors import AppError
from optio.security.ssrf import UnsafeURLError, check_url, guarded_client
from optio.services.users import USERNAME_RE
from optio.store import accounts, workspaces
from optio.store.db import Database
from optio.store.models import User
from optio.store.session import Session

log = structlog.get_logger(__name__)
STATE_TTL_S = 600
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]


class OidcError(AppError):
    status = 401
    code = "oidc_failed"


class OidcRefused(AppError):
    """A valid sign-in of someone this server does not admit (unverified email, domain not allowed)."""

    status = 403
    code = "oidc_refused"


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
    # joserfc is loaded with the first sign-in rather than at every start (most servers never use OIDC).
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    try:
        keys = KeySet.import_key_set(cast(Any, jwks))  # a provider's JWKS, checked by the import
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


def admitted_email(settings: Settings, claims: dict[str, Any]) -> str:
    """The verified email of these claims, lower-cased, if this server admits it; else OidcRefused."""
    email, verified = claims.get("email"), claims.get("email_verified")
    if not isinstance(email, str) or "@" not in email or verified not in (True, "true"):
        raise OidcRefused("sign-in refused: the identity provider did not vouch for an email address "
                          "(a verified email is required)")
    email = email.strip().lower()
    allowed = settings.oidc_allowed_domains
    if allowed and email.rsplit("@", 1)[1] not in allowed:
        raise OidcRefused("sign-in refused: accounts of this email domain may not sign in here")
    return email


def _new_username(session: Session, issuer: str, subject: str, email: str) -> str:
    if USERNAME_RE.match(email) and not accounts.username_taken(session, email):
        return email
    digest = hashlib.sha256(f"{issuer}\x00{subject}".encode()).hexdigest()
    for length in range(12, len(digest) + 1, 4):
        name = f"oidc-{digest[:length]}"
        if not accounts.username_taken(session, name):
            return name
    raise OidcError("no free username for this identity; ask an administrator")


def user_for_claims(db: Database, settings: Settings, claims: dict[str, Any]) -> User:
    """The Optio user of this (issuer, subject); created on first sign-in, in a workspace only if configured."""
    issuer, subject = str(claims["iss"]), str(claims["sub"])
    email = admitted_email(settings, claims)
    with db.write() as session:
        existing = accounts.user_by_identity(session, issuer, subject)
        if existing is not None:
            return existing
        username = _new_username(session, issuer, subject, email)
        ws = None
        if settings.oidc_default_workspace:
            ws = workspaces.by_slug(session, settings.oidc_default_workspace)
            if ws is None:
                log.warning("OPTIO_OIDC_DEFAULT_WORKSPACE names no workspace; the new user joins none",
                            workspace=settings.oidc_default_workspace)
        user = accounts.add_user(session, username=username, display_name=str(claims.get("name") or username)[:200],
                                 email=email, oidc_issuer=issuer, oidc_subject=subject,
                                 default_workspace_id=ws.id if ws else None)
        if user is None:
            raise OidcError("this identity was just registered concurrently; sign in again")
        if ws is not None:
            accounts.add_membership(session, ws.id, user.id, settings.oidc_default_role)
    return user
