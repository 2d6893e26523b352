"""People and their roles in workspaces, and the admin created on first start.

Roles are ranked (viewer < member < admin) so a permission check is one comparison. Looking up a
workspace for a user who is not a member answers "not found", the same as a workspace that does not
exist: membership, not existence, is what a caller may learn.

The same holds for people. Usernames are global (they sign in), so a workspace admin addresses only
people it already shares a workspace with; anyone else is "not found", exactly like a name nobody has.
Creating users and resetting someone else's password are for a *server administrator* (`is_server_admin`,
given to the bootstrap admin), who may know every account anyway. A password is otherwise changed only by
its owner, with the current one, and the change ends the owner's other browser sessions.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from functools import cache

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from optio.errors import AppError, Conflict, Invalid, NotFound
from optio.security import tokens
from optio.store import workspaces
from optio.store.db import Database
from optio.store.models import ApiKey, Membership, User, WebSession, Workspace

ROLES = ("viewer", "member", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
BOOTSTRAP_USERNAME = "admin"
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,199}$")


class WrongPassword(AppError):
    status = 403
    code = "forbidden"


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
        admin = User(username=BOOTSTRAP_USERNAME, display_name="Administrator", default_workspace_id=ws.id,
                     is_server_admin=True)
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


def is_server_admin(session: Session, user_id: int | None) -> bool:
    return bool(user_id) and bool(session.scalar(select(User.is_server_admin).where(User.id == user_id)))


def _shares_a_workspace(session: Session, user_a: int, user_b: int) -> bool:
    """Whether two users are members of a common workspace: then each already sees the other's name."""
    mine = select(Membership.workspace_id).where(Membership.user_id == user_a)
    return session.scalar(
        select(Membership.id).where(Membership.user_id == user_b, Membership.workspace_id.in_(mine)).limit(1)
    ) is not None


def _unknown_user(username: str) -> NotFound:
    # One message for "nobody has this name" and "someone you do not share a workspace with has it".
    return NotFound(f"user {username!r} not found among the people you share a workspace with "
                    "(a server administrator adds new people)", field="username")


def set_member(
    db: Database, workspace_id: int, actor_id: int | None, username: str, role: str
) -> tuple[User, str, str | None, bool]:
    """Add `username` to the workspace or change their role.

    Returns (user, role, previous role, created). A workspace admin reaches only people it already shares a
    workspace with, so the answer never tells whether a name exists elsewhere; only a server administrator
    may create a user here. The last admin of a workspace cannot be demoted, so a workspace is never left
    without someone able to manage it.
    """
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}", field="role")
    with db.write() as session:
        server_admin = is_server_admin(session, actor_id)
        user = session.scalar(select(User).where(User.username == username))
        if user is not None and not server_admin and not _shares_a_workspace(session, actor_id or 0, user.id):
            user = None
        created = False
        if user is None:
            if not server_admin:
                raise _unknown_user(username)
            if not USERNAME_RE.match(username):
                raise Invalid("username must be letters, digits and . _ @ -", field="username")
            user = User(username=username, display_name=username, default_workspace_id=workspace_id)
            session.add(user)
            session.flush()
            created = True
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


def list_users(session: Session) -> list[tuple[User, list[tuple[str, str]]]]:
    """Every user with their (workspace slug, role) pairs: a server administrator's view."""
    out: list[tuple[User, list[tuple[str, str]]]] = []
    for user in session.scalars(select(User).order_by(User.id)):
        rows = session.execute(
            select(Workspace.slug, Membership.role).join(Membership, Membership.workspace_id == Workspace.id)
            .where(Membership.user_id == user.id).order_by(Workspace.id)
        )
        out.append((user, [(r[0], r[1]) for r in rows]))
    return out


def _end_sessions(session: Session, user_id: int, keep_token: str | None = None) -> int:
    """Delete the user's browser sessions except the one holding `keep_token`; how many ended."""
    q = select(WebSession).where(WebSession.user_id == user_id)
    if keep_token:
        q = q.where(WebSession.digest != tokens.hash_token(keep_token))
    ended = list(session.scalars(q))
    for row in ended:
        session.delete(row)
    return len(ended)


def change_own_password(
    db: Database, user_id: int, current: str | None, new: str, *, keep_session: str | None = None
) -> int:
    """The owner changes their password, proving the current one; returns how many other sessions ended.

    An account that has no password yet (API-key-only) may set its first one without it: whoever holds its
    API key can already do everything the account can. An account bound to single sign-on gets no password
    from itself, so a stolen session cannot plant a way in that outlives the identity provider's say.
    """
    with db.read() as session:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound("user not found")
        stored = user.password_hash
        sso = user.oidc_subject is not None
    if stored:
        if not current:
            raise Invalid("your current password is required to change it", field="current_password")
        if not tokens.verify_password(current, stored):
            raise WrongPassword("the current password is wrong", field="current_password")
    elif sso:
        raise WrongPassword("this account signs in with single sign-on and has no password to change",
                            field="password")
    new_hash = tokens.hash_password(new)  # deliberately slow: not inside the write transaction
    with db.write() as session:
        user = session.get(User, user_id)
        if user is None or user.password_hash != stored:
            raise Conflict("the password was changed meanwhile; try again", field="password")
        user.password_hash = new_hash
        return _end_sessions(session, user_id, keep_session)


def reset_password(db: Database, username: str, new: str) -> User:
    """A server administrator sets someone's password; every browser session of theirs ends."""
    new_hash = tokens.hash_password(new)
    with db.write() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"user {username!r} not found", field="username")
        user.password_hash = new_hash
        _end_sessions(session, user.id)
    return user


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
