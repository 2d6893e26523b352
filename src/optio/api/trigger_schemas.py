"""Request and response bodies of `/api/triggers`, `/api/hooks`, `/api/blueprints` and `/api/notifications`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from optio.api.schemas import (
    NAME_PATTERN,
    STRICT_INPUT,
    AgentConfig,
    Line,
    ParamSpecIn,
    ParamValue,
    SecretName,
    Text,
)

ParamName = Annotated[Line, Field(max_length=200)]


class TriggerCreate(BaseModel):
    model_config = STRICT_INPUT
    type: Literal["manual", "schedule", "webhook", "ticket"]
    target_type: Literal["job", "blueprint", "persistent_agent"] = "job"
    target: Annotated[Line, Field(min_length=1, max_length=200, description="The job's or blueprint's name or id")]
    cron: Annotated[Line, Field(max_length=200)] | None = Field(default=None, description="Schedule: 5-field cron")
    timezone: Annotated[Line, Field(max_length=64)] | None = Field(default=None,
                                                                   description="Schedule: IANA zone; default UTC")
    params: dict[ParamName, ParamValue] = Field(default_factory=dict, description="Parameters of every fire")
    param_map: dict[ParamName, Annotated[Line, Field(max_length=500)]] = Field(
        default_factory=dict, description="Webhook: parameter → `$.path` in the body")
    source: Annotated[Line, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="Ticket: the ticket source's name or id")
    label: Annotated[Line, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="Ticket: pick up tickets with this label")
    state: Literal["open", "closed"] | None = Field(default=None, description="Ticket: ticket state; default open")
    assignee: Annotated[Line, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="Ticket: pick up tickets assigned to this user")
    project: Annotated[Line, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="Ticket: the tracker's project (GitHub/GitLab: milestone)")


class TriggerOut(BaseModel):
    id: int
    type: str
    target_type: str
    target_id: int
    target: str
    cron: str | None
    timezone: str | None
    params: dict[str, Any]
    param_map: dict[str, Any]
    paused: bool
    url: str | None = Field(description="Webhook: where to POST")
    last_fired_at: datetime | None
    next_due_at: datetime | None
    created_at: datetime
    source_id: int | None = Field(default=None, description="Ticket: the ticket source")
    ticket_filter: dict[str, Any] = Field(default_factory=dict, description="Ticket: which tickets it picks up")


class TriggerCreated(TriggerOut):
    secret: str | None = Field(description="Webhook: the signing secret, shown this once")


class TriggerFireIn(BaseModel):
    model_config = STRICT_INPUT
    params: dict[ParamName, ParamValue] = Field(default_factory=dict)


class FireOut(BaseModel):
    run_kind: str
    run_id: int


class TriggerFireOut(BaseModel):
    id: int
    source: str
    due_at: datetime | None
    run_kind: str
    run_id: int
    created_at: datetime


class ReviewSettings(BaseModel):
    """What replaces the repo's review and merge settings for the tasks a blueprint spawns; unset: the repo's."""

    model_config = STRICT_INPUT
    require_approval: bool | None = Field(default=None, description="An approving review is needed to merge")
    auto_merge: bool | None = Field(default=None, description="Merge by itself once green and approved")
    review_agent: bool | None = Field(default=None, description="false: no review agent, whatever the repo has")
    review_agent_type: Annotated[Line, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="The review agent (instead of the repo's)")
    review_agent_config: AgentConfig | None = None
    review_prompt: Text | None = Field(default=None, max_length=100_000)


class BlueprintCreate(BaseModel):
    model_config = STRICT_INPUT
    name: str = Field(pattern=NAME_PATTERN, description="Unique per workspace; letters, digits, . _ -")
    description: Text = Field(default="", max_length=10_000)
    repo: Annotated[Line, Field(min_length=1, max_length=200, description="Repo name or id")]
    title_template: Line = Field(min_length=1, max_length=2000, description="The task's title; {{PARAM}} allowed")
    prompt_template: Text = Field(min_length=1, max_length=200_000, description="The task's prompt")
    agent_type: Annotated[Line, Field(min_length=1, max_length=64)] | None = None
    agent_config: AgentConfig = Field(default_factory=dict)
    params_schema: dict[ParamName, ParamSpecIn] = Field(default_factory=dict)
    priority: int = Field(default=0, ge=-1000, le=1000)
    max_retries: int = Field(default=1, ge=0, le=20)
    secret_names: list[SecretName] = Field(default_factory=list, max_length=100)
    review_settings: ReviewSettings = Field(default_factory=ReviewSettings)


class BlueprintOut(BaseModel):
    id: int
    name: str
    description: str
    repo: str
    repo_id: int
    title_template: str
    prompt_template: str
    agent_type: str | None
    agent_config: dict[str, Any]
    params_schema: dict[str, Any]
    priority: int
    max_retries: int
    secret_names: list[str]
    review_settings: dict[str, Any] = Field(description="Replaces the repo's review and merge settings")
    created_at: datetime


class BlueprintRun(BaseModel):
    model_config = STRICT_INPUT
    params: dict[ParamName, ParamValue] = Field(default_factory=dict)


class NotificationWebhookCreate(BaseModel):
    model_config = STRICT_INPUT
    url: Annotated[Line, Field(min_length=1, max_length=2000, description="http(s) URL; must pass the SSRF guard")]
    format: Literal["optio", "slack"] = Field(default="optio", description="optio: signed JSON; slack: a message")
    events: list[Annotated[Line, Field(max_length=64)]] = Field(
        default_factory=list, max_length=20, description="Events to send (all when empty)")


class NotificationWebhookOut(BaseModel):
    id: int
    url: str
    format: str
    events: list[str]
    created_at: datetime


class NotificationWebhookCreated(NotificationWebhookOut):
    secret: str | None = Field(description="optio format: the signing secret, shown this once")


class DeliveryOut(BaseModel):
    id: int
    event: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]
