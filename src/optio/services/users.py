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

from optio.errors import AppError, Conflict, Invalid, NotFound
from optio.security import tokens
from optio.store import accounts, workspaces
from optio.store.db import Database
from optio.store.models import User, Workspace
from optio.store.session import Session

ROLES = ("viewer", "member", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
BOOTSTRAP_USERNAME = "admin"
DEFAULT_WORKSPACE_SLUG = workspaces.DEFAULT_SLUG
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
        existing = accounts.first_user(session)
        if existing is not None:
            return Bootstrap(user_id=existing.id, api_key=None)
        admin = accounts.add_user(session, username=BOOTSTRAP_USERNAME, display_name="Administrator",
                                  default_workspace_id=ws.id, is_server_admin=True)
        if admin is None:
            raise Conflict("the bootstrap admin was created concurrently; start again")
        accounts.add_membership(session, ws.id, admin.id, "admin")
        if preset_key is not None:
            plaintext, prefix, digest = preset_key, preset_key[: tokens.API_KEY_DISPLAY_LENGTH], \
                tokens.hash_api_key(preset_key)
        else:
            material = tokens.generate_api_key()
            plaintext, prefix, digest = material.plaintext, material.prefix, material.digest
        accounts.add_api_key(session, admin.id, "bootstrap", prefix, digest)
        return Bootstrap(user_id=admin.id, api_key=plaintext)


def get_user(db: Database, user_id: int) -> User:
    with db.read() as session:
        user = accounts.get_user(session, user_id)
    if user is None:
        raise NotFound("user not found")
    return user


def first_admin_id(session: Session) -> int | None:
    user = accounts.first_user(session)
    return user.id if user is not None else None


def workspace_for(session: Session, user_id: int, slug: str | None) -> tuple[Workspace, str]:
    """The workspace a request acts in (named, else the user's default) and the user's role there."""
    user = accounts.get_user(session, user_id)
    if user is None:
        raise NotFound("user not found")
    if slug:
        ws = workspaces.by_slug(session, slug)
    elif user.default_workspace_id is not None:
        ws = accounts.get_workspace(session, user.default_workspace_id)
    else:
        ws = accounts.first_workspace_of(session, user_id)
    role = accounts.role_in(session, ws.id, user_id) if ws is not None else None
    if ws is None or role is None:
        raise NotFound(f"workspace {slug!r} not found" if slug else "you are not a member of any workspace")
    return ws, role


def memberships_of(session: Session, user_id: int) -> list[tuple[Workspace, str]]:
    return accounts.memberships_of(session, user_id)


def create_workspace(db: Database, creator_id: int, slug: str, name: str) -> Workspace:
    """A new workspace with its creator as admin."""
    if not SLUG_RE.match(slug):
        raise Invalid("slug must be lowercase letters, digits and dashes", field="slug")
    return accounts.insert_workspace(db, creator_id, slug, name or slug)


def list_members(session: Session, workspace_id: int) -> list[tuple[User, str]]:
    return accounts.members_of(session, workspace_id)


def is_server_admin(session: Session, user_id: int | None) -> bool:
    return accounts.is_server_admin(session, user_id)


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
        user = accounts.user_by_name(session, username)
        # Two people who share a workspace already see each other's name; nobody else is addressable.
        if user is not None and not server_admin and not accounts.shares_a_workspace(session, actor_id or 0,
                                                                                      user.id):
            user = None
        created = False
        if user is None:
            if not server_admin:
                raise _unknown_user(username)
            if not USERNAME_RE.match(username):
                raise Invalid("username must be letters, digits and . _ @ -", field="username")
            user = accounts.add_user(session, username=username, display_name=username,
                                     default_workspace_id=workspace_id)
            if user is None:
                raise Conflict(f"user {username!r} was created concurrently; try again", field="username")
            created = True
        membership = accounts.membership(session, workspace_id, user.id)
        previous = membership.role if membership else None
        if membership is None:
            accounts.add_membership(session, workspace_id, user.id, role)
        else:
            if previous == "admin" and role != "admin" and accounts.admin_count(session, workspace_id) <= 1:
                raise Conflict("the last admin of a workspace cannot be demoted", field="role")
            membership.role = role
        if user.default_workspace_id is None:
            user.default_workspace_id = workspace_id
    return user, role, previous, created


def remove_member(db: Database, workspace_id: int, username: str) -> User:
    with db.write() as session:
        row = accounts.member_by_name(session, workspace_id, username)
        if row is None:
            raise NotFound(f"member {username!r} not found")
        membership, user = row
        if membership.role == "admin" and accounts.admin_count(session, workspace_id) <= 1:
            raise Conflict("the last admin of a workspace cannot be removed")
        accounts.remove_membership(session, membership)
    return user


def list_users(session: Session) -> list[tuple[User, list[tuple[str, str]]]]:
    """Every user with their (workspace slug, role) pairs: a server administrator's view."""
    return accounts.users_with_roles(session)


def _end_sessions(session: Session, user_id: int, keep_token: str | None = None) -> int:
    """Delete the user's browser sessions except the one holding `keep_token`; how many ended."""
    return accounts.end_web_sessions(session, user_id, tokens.hash_token(keep_token) if keep_token else None)


def change_own_password(
    db: Database, user_id: int, current: str | None, new: str, *, keep_session: str | None = None
) -> int:
    """The owner changes their password, proving the current one; returns how many other sessions ended.

    An account that has no password yet (API-key-only) may set its first one without it: whoever holds its
    API key can already do everything the account can. An account bound to single sign-on gets no password
    from itself, so a stolen session cannot plant a way in that outlives the identity provider's say.
    """
    with db.read() as session:
        user = accounts.get_user(session, user_id)
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
        user = accounts.get_user(session, user_id)
        if user is None or user.password_hash != stored:
            raise Conflict("the password was changed meanwhile; try again", field="password")
        user.password_hash = new_hash
        return _end_sessions(session, user_id, keep_session)


def reset_password(db: Database, username: str, new: str) -> User:
    """A server administrator sets someone's password; every browser session of theirs ends."""
    new_hash = tokens.hash_password(new)
    with db.write() as session:
        user = accounts.user_by_name(session, username)
        if user is None:
            raise NotFound(f"user {username!r} not found", field="username")
        user.password_hash = new_hash
        _end_sessions(session, user.id)
    return user


def check_password(db: Database, username: str, password: str) -> User | None:
    """The user if the password matches; None otherwise (also for unknown users and users without one)."""
    with db.read() as session:
        user = accounts.user_by_name(session, username, active_only=True)
    if user is None or not user.password_hash:
        # Spend comparable time so the response does not reveal which usernames exist.
        tokens.verify_password(password or "x", _dummy_hash())
        return None
    return user if tokens.verify_password(password, user.password_hash) else None


@cache
def _dummy_hash() -> str:
    return tokens.hash_password(secrets.token_urlsafe(16))
