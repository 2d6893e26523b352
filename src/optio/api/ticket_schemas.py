"""Request and response bodies of `/api/ticket-sources`, `/api/ticket-links` and `/api/ticket-hooks`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from optio.api.schemas import NAME_PATTERN, STRICT_INPUT, Line, SecretName


class TicketSourceCreate(BaseModel):
    model_config = STRICT_INPUT
    name: str = Field(pattern=NAME_PATTERN, description="Unique per workspace; letters, digits, . _ -")
    kind: Annotated[Line, Field(min_length=1, max_length=16, description="local, github, gitlab, linear, jira, notion")]
    api_url: Annotated[Line, Field(max_length=2000)] | None = Field(
        default=None, description="The tracker's API root (default: the public service); must pass the SSRF guard")
    options: dict[Annotated[Line, Field(max_length=100)], Any] = Field(
        default_factory=dict, description='The provider\'s keys, e.g. {"repo": "owner/name"} for GitHub')
    credential_secret: SecretName | None = Field(default=None, description="Name of the secret holding its token")


class TicketSourceOut(BaseModel):
    id: int
    name: str
    kind: str
    api_url: str
    options: dict[str, Any]
    credential_secret: str | None
    webhook_url: str = Field(description="Where the tracker should send its webhooks")
    last_polled_at: datetime | None
    last_error: str | None
    created_at: datetime


class TicketSourceCreated(TicketSourceOut):
    webhook_secret: str = Field(description="The webhook secret (GitHub: HMAC key; GitLab: token), shown this once")


class TicketNoteOut(BaseModel):
    event: str
    state: str
    attempts: int
    last_error: str | None
    done_at: datetime | None


class TicketLinkOut(BaseModel):
    id: int
    source: str
    kind: str
    external_id: str
    key: str
    url: str
    title: str
    task_id: int
    trigger_id: int | None
    posted: list[str]
    notes: list[TicketNoteOut]
    created_at: datetime


class TicketHookOut(BaseModel):
    events: int
    spawned: list[int] = Field(description="Ids of the repo tasks this delivery spawned")
