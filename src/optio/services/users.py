"""People and their roles in workspaces, and the admin created on first start.

Roles are ranked (viewer < member < admin) so a permission check is one comparison. Looking up a
workspace for a user who is not a member answers "not found", the same as a workspace that does not
exist: membership, not existence, is what a caller may learn.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from functools import cache

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from optio.errors import Conflict, Invalid, NotFound
from optio.security import tokens
from optio.store import workspaces
from optio.store.db import Database
from optio.store.models import ApiKey, Membership, User, Workspace

ROLES = ("viewer", "member", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
BOOTSTRAP_USERNAME = "admin"
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def role_at_least(role: str, needed: str) -> bool:
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[needed]


@dataclass(frozen=True)
class Bootstrap:
    """What the first start created; `api_key` is the only time the key's plaintext exists outside a client."""

    user_id: int
    api_key: str | None


def ensure_bootstrap_admin(db: Database, preset_key: str | None) -> Bootstrap:
    """On an empty install, create the default workspace's admin with one API key (preset or generated)."""
    if preset_key is not None and not tokens.looks_like_api_key(preset_key):
        raise ValueError("OPTIO_ADMIN_API_KEY must look like optio_ followed by 40 letters and digits")
    with db.write() as session:
        ws = workspaces.ensure_default(session)
        if session.scalar(select(func.count()).select_from(User)):
            admin = session.scalar(select(User).order_by(User.id).limit(1))
            assert admin is not None
            return Bootstrap(user_id=admin.id, api_key=None)
        admin = User(username=BOOTSTRAP_USERNAME, display_name="Administrator", default_workspace_id=ws.id)
        session.add(admin)
        session.flush()
        session.add(Membership(workspace_id=ws.id, user_id=admin.id, role="admin"))
        if preset_key is not None:
            plaintext, prefix, digest = preset_key, preset_key[: tokens.API_KEY_DISPLAY_LENGTH], \
                tokens.hash_api_key(preset_key)
        else:
            material = tokens.generate_api_key()
            plaintext, prefix, digest = material.plaintext, material.prefix, material.digest
        session.add(ApiKey(user_id=admin.id, name="bootstrap", prefix=prefix, digest=digest))
        return Bootstrap(user_id=admin.id, api_key=plaintext)


def first_admin_id(session: Session) -> int | None:
    return session.scalar(select(User.id).order_by(User.id).limit(1))


def workspace_for(session: Session, user_id: int, slug: str | None) -> tuple[Workspace, str]:
    """The workspace a request acts in (named, else the user's default) and the user's role there."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user not found")
    if slug:
        ws = workspaces.by_slug(session, slug)
    elif user.default_workspace_id is not None:
        ws = session.get(Workspace, user.default_workspace_id)
    else:
        ws = session.scalar(
            select(Workspace).join(Membership, Membership.workspace_id == Workspace.id)
            .where(Membership.user_id == user_id).order_by(Workspace.id).limit(1)
        )
    role = None
    if ws is not None:
        role = session.scalar(
            select(Membership.role).where(Membership.workspace_id == ws.id, Membership.user_id == user_id)
        )
    if ws is None or role is None:
        raise NotFound(f"workspace {slug!r} not found" if slug else "you are not a member of any workspace")
    return ws, role


def memberships_of(session: Session, user_id: int) -> list[tuple[Workspace, str]]:
    rows = session.execute(
        select(Workspace, Membership.role).join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == user_id).order_by(Workspace.id)
    )
    return [(r[0], r[1]) for r in rows]


def create_workspace(db: Database, creator_id: int, slug: str, name: str) -> Workspace:
    """A new workspace with its creator as admin."""
    if not SLUG_RE.match(slug):
        raise Invalid("slug must be lowercase letters, digits and dashes", field="slug")
    try:
        with db.write() as session:
            ws = Workspace(slug=slug, name=name or slug)
            session.add(ws)
            session.flush()
            session.add(Membership(workspace_id=ws.id, user_id=creator_id, role="admin"))
    except IntegrityError:
        raise Conflict(f"a workspace with slug {slug!r} already exists", field="slug") from None
    return ws


def list_members(session: Session, workspace_id: int) -> list[tuple[User, str]]:
    rows = session.execute(
        select(User, Membership.role).join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == workspace_id).order_by(User.id)
    )
    return [(r[0], r[1]) for r in rows]


def set_member(
    db: Database, workspace_id: int, username: str, role: str, *, password: str | None = None
) -> tuple[User, str, str | None, bool]:
    """Add `username` (created if new) to the workspace or change their role.

    Returns (user, role, previous role, created). The last admin of a workspace cannot be demoted, so a
    workspace is never left without someone able to manage it.
    """
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}", field="role")
    with db.write() as session:
        user = session.scalar(select(User).where(User.username == username))
        created = user is None
        if user is None:
            user = User(username=username, display_name=username, default_workspace_id=workspace_id)
            session.add(user)
            session.flush()
        if password:
            user.password_hash = tokens.hash_password(password)
        membership = session.scalar(
            select(Membership).where(Membership.workspace_id == workspace_id, Membership.user_id == user.id)
        )
        previous = membership.role if membership else None
        if membership is None:
            session.add(Membership(workspace_id=workspace_id, user_id=user.id, role=role))
        else:
            if previous == "admin" and role != "admin" and _admin_count(session, workspace_id) <= 1:
                raise Conflict("the last admin of a workspace cannot be demoted", field="role")
            membership.role = role
        if user.default_workspace_id is None:
            user.default_workspace_id = workspace_id
    return user, role, previous, created


def remove_member(db: Database, workspace_id: int, username: str) -> User:
    with db.write() as session:
        row = session.execute(
            select(Membership, User).join(User, User.id == Membership.user_id)
            .where(Membership.workspace_id == workspace_id, User.username == username)
        ).first()
        if row is None:
            raise NotFound(f"member {username!r} not found")
        membership, user = row
        if membership.role == "admin" and _admin_count(session, workspace_id) <= 1:
            raise Conflict("the last admin of a workspace cannot be removed")
        session.delete(membership)
    return user


def _admin_count(session: Session, workspace_id: int) -> int:
    return session.scalar(
        select(func.count()).select_from(Membership)
        .where(Membership.workspace_id == workspace_id, Membership.role == "admin")
    ) or 0


def set_password(db: Database, user_id: int, password: str) -> None:
    with db.write() as session:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound("user not found")
        user.password_hash = tokens.hash_password(password)


def check_password(db: Database, username: str, password: str) -> User | None:
    """The user if the password matches; None otherwise (also for unknown users and users without one)."""
    with db.read() as session:
        user = session.scalar(select(User).where(User.username == username, User.is_active.is_(True)))
    if user is None or not user.password_hash:
        # Spend comparable time so the response does not reveal which usernames exist.
        tokens.verify_password(password or "x", _dummy_hash())
        return None
    return user if tokens.verify_password(password, user.password_hash) else None


@cache
def _dummy_hash() -> str:
    return tokens.hash_password(secrets.token_urlsafe(16))
