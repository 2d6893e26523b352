"""Personal API keys and browser sessions: issue, look up by digest, revoke.

Both are high-entropy tokens Optio generated, so a SHA-256 digest finds the row in one indexed lookup
(see `optio.security.tokens`). A key's `last_used_at` is written at most once a minute so a busy CLI
does not turn every read into a write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from optio.errors import NotFound
from optio.security import tokens
from optio.store.db import Database
from optio.store.models import ApiKey, User, WebSession
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
        key = ApiKey(user_id=user_id, name=name, prefix=material.prefix, digest=material.digest)
        session.add(key)
    return key, material.plaintext


def list_api_keys(db: Database, user_id: int) -> list[ApiKey]:
    with db.read() as session:
        return list(session.scalars(select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)))


def revoke_api_key(db: Database, user_id: int, key_id: int) -> ApiKey:
    """Revoke one of the caller's own keys (another user's key id is simply not found)."""
    with db.write() as session:
        key = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id))
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
        row = session.execute(
            select(ApiKey, User).join(User, User.id == ApiKey.user_id)
            .where(ApiKey.digest == digest, ApiKey.revoked_at.is_(None), User.is_active.is_(True))
        ).first()
    if row is None:
        return None
    key, user = row
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        with db.write() as session:
            session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return Identity(user_id=user.id, username=user.username, via="api_key")


def create_session(db: Database, user_id: int, ttl_s: float) -> str:
    token = tokens.new_session_token()
    now = utcnow()
    with db.write() as session:
        session.add(WebSession(user_id=user_id, digest=tokens.hash_token(token), created_at=now,
                               expires_at=now + timedelta(seconds=ttl_s)))
    return token


def identify_session(db: Database, token: str) -> Identity | None:
    if not token or len(token) > 200:
        return None
    with db.read() as session:
        row = session.execute(
            select(WebSession, User).join(User, User.id == WebSession.user_id)
            .where(WebSession.digest == tokens.hash_token(token), User.is_active.is_(True))
        ).first()
    if row is None or row[0].expires_at <= utcnow():
        return None
    return Identity(user_id=row[1].id, username=row[1].username, via="session", session_token=token)


def end_session(db: Database, token: str) -> None:
    with db.write() as session:
        ws = session.scalar(select(WebSession).where(WebSession.digest == tokens.hash_token(token)))
        if ws is not None:
            session.delete(ws)
