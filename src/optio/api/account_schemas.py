"""Request and response bodies for accounts, workspaces, members, API keys, secrets and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "member", "viewer"]
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,199}$"
SECRET_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class WorkspaceOut(BaseModel):
    id: int
    slug: str
    name: str
    role: Role


class WorkspaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    name: str = Field(default="", max_length=200)


class WhoAmI(BaseModel):
    user_id: int
    username: str
    display_name: str
    email: str | None
    workspace: WorkspaceOut
    workspaces: list[WorkspaceOut]
    auth: str = Field(description="How this request was authenticated: api_key, session or disabled")
    server_admin: bool = Field(default=False, description="May create users and reset their passwords")


class PasswordIn(BaseModel):
    """A server administrator's reset of someone else's password."""

    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=12, max_length=1000)


class PasswordChange(BaseModel):
    """Your own password change: the current password is required once one is set."""

    model_config = ConfigDict(extra="forbid")
    current_password: str | None = Field(default=None, max_length=1000,
                                         description="Required unless the account has no password yet")
    password: str = Field(min_length=12, max_length=1000)


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    email: str | None
    server_admin: bool
    sso: bool = Field(description="Signs in through OIDC (bound to the provider's issuer and subject)")
    workspaces: dict[str, Role] = Field(description="Workspace slug -> role")


class MemberOut(BaseModel):
    user_id: int
    username: str
    display_name: str
    role: Role


class MemberSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role
    password: str | None = Field(default=None, max_length=1000,
                                 description="Always refused (403): passwords are never set through a membership; "
                                             "see PUT /api/me/password and PUT /api/users/{username}/password")
    create_api_key: bool = Field(default=False, description="Issue a first API key for a user a server "
                                                            "administrator creates here")


class MemberSetOut(MemberOut):
    created: bool = Field(description="Only ever true for a server administrator, the only one who creates users")
    previous_role: Role | None
    api_key: str | None = Field(default=None, description="Shown once, only when create_api_key was asked")


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself: shown this once, only its hash is stored")


class SecretSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(max_length=65_536, description="Write-only: never returned by any endpoint")
    repo: str | None = Field(default=None, min_length=1, max_length=200,
                             description="Repo name or id: scope the secret to that repo")


class SecretOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    scope: Literal["workspace", "repo"]
    repo_id: int | None
    key_version: int
    created_at: datetime
    updated_at: datetime


class SecretSetOut(SecretOut):
    created: bool


class KeyRotationOut(BaseModel):
    previous_versions: list[int]
    current_version: int
    reencrypted: int


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    actor: str
    user_id: int | None
    action: str
    target_type: str
    target_id: str
    detail: dict[str, Any]
    created_at: datetime


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None
