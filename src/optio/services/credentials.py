"""Personal API keys and browser sessions: issue, look up by digest, revoke.

Both are high-entropy tokens Optio generated, so a SHA-256 digest finds the row in one indexed lookup
(see `optio.security.tokens`). A key's `last_used_at` is written at most once a minute so a busy CLI
does not turn every read into a write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from optio.errors import NotFound
from optio.security import tokens
from optio.store import accounts
from optio.store.db import Database, DatabaseUnavailable
from optio.store.models import ApiKey
from optio.store.types import utcnow

LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class Identity:
    user_id: int
    username: str
    via: str  # "api_key" | "session" | "disabled"
    session_token: str | None = None


def create_api_key(db: Database, user_id: int, name: str) -> tuple[ApiKey, str]:
    """A new key for `user_id`; the plaintext is returned here and never again."""
    material = tokens.generate_api_key()
    with db.write() as session:
        key = accounts.add_api_key(session, user_id, name, material.prefix, material.digest)
    return key, material.plaintext


def list_api_keys(db: Database, user_id: int) -> list[ApiKey]:
    with db.read() as session:
        return accounts.api_keys_of(session, user_id)


def revoke_api_key(db: Database, user_id: int, key_id: int) -> ApiKey:
    """Revoke one of the caller's own keys (another user's key id is simply not found)."""
    with db.write() as session:
        key = accounts.api_key_of(session, user_id, key_id)
        if key is None:
            raise NotFound(f"API key {key_id} not found")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
    return key


def identify_api_key(db: Database, plaintext: str) -> Identity | None:
    if not tokens.looks_like_api_key(plaintext):
        return None
    digest = tokens.hash_api_key(plaintext)
    now = utcnow()
    with db.read() as session:
        row = accounts.live_api_key(session, digest)
    if row is None:
        return None
    key, user = row
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        try:
            with db.write() as session:
                accounts.mark_api_key_used(session, key.id, now)
        except DatabaseUnavailable:
            pass  # bookkeeping only: a busy database must not turn away a request that only reads
    return Identity(user_id=user.id, username=user.username, via="api_key")


def create_session(db: Database, user_id: int, ttl_s: float) -> str:
    token = tokens.new_session_token()
    now = utcnow()
    with db.write() as session:
        accounts.add_web_session(session, user_id, tokens.hash_token(token), now, now + timedelta(seconds=ttl_s))
    return token


def identify_session(db: Database, token: str) -> Identity | None:
    if not token or len(token) > 200:
        return None
    with db.read() as session:
        row = accounts.web_session(session, tokens.hash_token(token))
    if row is None or row[0].expires_at <= utcnow():
        return None
    return Identity(user_id=row[1].id, username=row[1].username, via="session", session_token=token)


def end_session(db: Database, token: str) -> None:
    with db.write() as session:
        accounts.delete_web_session(session, tokens.hash_token(token))
