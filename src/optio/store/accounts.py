"""People, their workspace memberships, their API keys and their browser sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from optio.errors import Conflict
from optio.store.db import Database
from optio.store.models import ApiKey, Membership, User, WebSession, Workspace

# --- users ---------------------------------------------------------------------------------------------------


def first_user(session: Session) -> User | None:
    """The oldest account (the bootstrap admin on a normal install), or None on an empty install."""
    return session.scalar(select(User).order_by(User.id).limit(1))


def get_user(session: Session, user_id: int | None) -> User | None:
    return session.get(User, user_id) if user_id is not None else None


def user_by_name(session: Session, username: str, *, active_only: bool = False) -> User | None:
    q = select(User).where(User.username == username)
    if active_only:
        q = q.where(User.is_active.is_(True))
    return session.scalar(q)


def username_taken(session: Session, username: str) -> bool:
    return session.scalar(select(User.id).where(User.username == username)) is not None


def user_by_identity(session: Session, issuer: str, subject: str) -> User | None:
    """The account bound to a single sign-on identity."""
    return session.scalar(select(User).where(User.oidc_issuer == issuer, User.oidc_subject == subject))


def add_user(session: Session, *, username: str, display_name: str, default_workspace_id: int | None,
             is_server_admin: bool = False, email: str | None = None, oidc_issuer: str | None = None,
             oidc_subject: str | None = None) -> User | None:
    """A new account, flushed so it has an id; None if its name or identity was taken meanwhile.

    A clash rolls the caller's transaction back, so it can only be answered by giving up.
    """
    user = User(username=username, display_name=display_name, default_workspace_id=default_workspace_id,
                is_server_admin=is_server_admin, email=email, oidc_issuer=oidc_issuer, oidc_subject=oidc_subject)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        return None
    return user


def is_server_admin(session: Session, user_id: int | None) -> bool:
    return bool(user_id) and bool(session.scalar(select(User.is_server_admin).where(User.id == user_id)))


def users_with_roles(session: Session) -> list[tuple[User, list[tuple[str, str]]]]:
    """Every user with their (workspace slug, role) pairs."""
    out: list[tuple[User, list[tuple[str, str]]]] = []
    for user in session.scalars(select(User).order_by(User.id)):
        rows = session.execute(
            select(Workspace.slug, Membership.role).join(Membership, Membership.workspace_id == Workspace.id)
            .where(Membership.user_id == user.id).order_by(Workspace.id)
        )
        out.append((user, [(r[0], r[1]) for r in rows]))
    return out


# --- workspaces and memberships ------------------------------------------------------------------------------


def get_workspace(session: Session, workspace_id: int) -> Workspace | None:
    return session.get(Workspace, workspace_id)


def insert_workspace(db: Database, creator_id: int, slug: str, name: str) -> Workspace:
    """A new workspace with its creator as admin; a slug already taken is a 409."""
    try:
        with db.write() as session:
            ws = Workspace(slug=slug, name=name)
            session.add(ws)
            session.flush()
            session.add(Membership(workspace_id=ws.id, user_id=creator_id, role="admin"))
    except IntegrityError:
        raise Conflict(f"a workspace with slug {slug!r} already exists", field="slug") from None
    return ws


def add_membership(session: Session, workspace_id: int, user_id: int, role: str) -> None:
    session.add(Membership(workspace_id=workspace_id, user_id=user_id, role=role))


def membership(session: Session, workspace_id: int, user_id: int) -> Membership | None:
    return session.scalar(
        select(Membership).where(Membership.workspace_id == workspace_id, Membership.user_id == user_id))


def role_in(session: Session, workspace_id: int, user_id: int) -> str | None:
    return session.scalar(
        select(Membership.role).where(Membership.workspace_id == workspace_id, Membership.user_id == user_id))


def first_workspace_of(session: Session, user_id: int) -> Workspace | None:
    return session.scalar(
        select(Workspace).join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == user_id).order_by(Workspace.id).limit(1)
    )


def memberships_of(session: Session, user_id: int) -> list[tuple[Workspace, str]]:
    rows = session.execute(
        select(Workspace, Membership.role).join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == user_id).order_by(Workspace.id)
    )
    return [(r[0], r[1]) for r in rows]


def members_of(session: Session, workspace_id: int) -> list[tuple[User, str]]:
    rows = session.execute(
        select(User, Membership.role).join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == workspace_id).order_by(User.id)
    )
    return [(r[0], r[1]) for r in rows]


def member_by_name(session: Session, workspace_id: int, username: str) -> tuple[Membership, User] | None:
    row = session.execute(
        select(Membership, User).join(User, User.id == Membership.user_id)
        .where(Membership.workspace_id == workspace_id, User.username == username)
    ).first()
    return (row[0], row[1]) if row is not None else None


def remove_membership(session: Session, row: Membership) -> None:
    session.delete(row)


def shares_a_workspace(session: Session, user_a: int, user_b: int) -> bool:
    """Whether two users are members of a common workspace."""
    mine = select(Membership.workspace_id).where(Membership.user_id == user_a)
    return session.scalar(
        select(Membership.id).where(Membership.user_id == user_b, Membership.workspace_id.in_(mine)).limit(1)
    ) is not None


def admin_count(session: Session, workspace_id: int) -> int:
    return session.scalar(
        select(func.count()).select_from(Membership)
        .where(Membership.workspace_id == workspace_id, Membership.role == "admin")
    ) or 0


# --- API keys --------------------------------------------------------------------------------------------------


def add_api_key(session: Session, user_id: int, name: str, prefix: str, digest: str) -> ApiKey:
    key = ApiKey(user_id=user_id, name=name, prefix=prefix, digest=digest)
    session.add(key)
    return key


def api_keys_of(session: Session, user_id: int) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)))


def api_key_of(session: Session, user_id: int, key_id: int) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id))


def live_api_key(session: Session, digest: str) -> tuple[ApiKey, User] | None:
    """The unrevoked key with this digest and its active owner."""
    row = session.execute(
        select(ApiKey, User).join(User, User.id == ApiKey.user_id)
        .where(ApiKey.digest == digest, ApiKey.revoked_at.is_(None), User.is_active.is_(True))
    ).first()
    return (row[0], row[1]) if row is not None else None


def mark_api_key_used(session: Session, key_id: int, when: datetime) -> None:
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when))


# --- browser sessions ----------------------------------------------------------------------------------------


def add_web_session(session: Session, user_id: int, digest: str, created_at: datetime, expires_at: datetime) -> None:
    session.add(WebSession(user_id=user_id, digest=digest, created_at=created_at, expires_at=expires_at))


def web_session(session: Session, digest: str) -> tuple[WebSession, User] | None:
    """The browser session with this digest and its active owner (expired or not)."""
    row = session.execute(
        select(WebSession, User).join(User, User.id == WebSession.user_id)
        .where(WebSession.digest == digest, User.is_active.is_(True))
    ).first()
    return (row[0], row[1]) if row is not None else None


def delete_web_session(session: Session, digest: str) -> None:
    row = session.scalar(select(WebSession).where(WebSession.digest == digest))
    if row is not None:
        session.delete(row)


def end_web_sessions(session: Session, user_id: int, keep_digest: str | None = None) -> int:
    """Delete the user's browser sessions except the one with `keep_digest`; how many ended."""
    q = select(WebSession).where(WebSession.user_id == user_id)
    if keep_digest:
        q = q.where(WebSession.digest != keep_digest)
    ended = list(session.scalars(q))
    for row in ended:
        session.delete(row)
    return len(ended)
