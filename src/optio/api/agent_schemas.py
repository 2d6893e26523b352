"""Request and response bodies of `/api/agents` (persistent agents, their inboxes and turns)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from optio.api.schemas import STRICT_INPUT, AgentConfig, Line, SecretName, Text

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
Lifecycle = Literal["on-demand", "sticky", "always-on"]


class PersistentAgentCreate(BaseModel):
    model_config = STRICT_INPUT
    slug: str = Field(pattern=SLUG_PATTERN, description="Unique per workspace: lowercase letters, digits and -")
    name: Line | None = Field(default=None, max_length=200)
    system_prompt: Text = Field(default="", max_length=200_000)
    operator_manual: Text = Field(default="", max_length=200_000)
    agent_type: Line = Field(default="script", min_length=1, max_length=64)
    agent_config: AgentConfig = Field(default_factory=dict)
    lifecycle: Lifecycle = "on-demand"
    idle_timeout_s: float = Field(default=600.0, ge=0, le=30 * 24 * 3600)
    max_consecutive_failures: int = Field(default=3, ge=1, le=1000)
    max_turn_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    max_cost_usd: float | None = Field(default=None, ge=0, description="Spending cap per UTC day")
    secret_names: list[SecretName] = Field(default_factory=list, max_length=100)


class PersistentAgentUpdate(BaseModel):
    """The fields to change; those left out stay as they are."""

    model_config = STRICT_INPUT
    name: Line | None = Field(default=None, max_length=200)
    system_prompt: Text | None = Field(default=None, max_length=200_000)
    operator_manual: Text | None = Field(default=None, max_length=200_000)
    agent_type: Line | None = Field(default=None, min_length=1, max_length=64)
    agent_config: AgentConfig | None = None
    lifecycle: Lifecycle | None = None
    idle_timeout_s: float | None = Field(default=None, ge=0, le=30 * 24 * 3600)
    max_consecutive_failures: int | None = Field(default=None, ge=1, le=1000)
    max_turn_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    max_cost_usd: float | None = Field(default=None, ge=0)
    secret_names: list[SecretName] | None = Field(default=None, max_length=100)


class PersistentAgentOut(BaseModel):
    id: int
    slug: str
    name: str
    state: str
    paused_reason: str | None
    control_intent: str | None
    system_prompt: str
    operator_manual: str
    agent_type: str
    agent_config: dict[str, Any]
    lifecycle: str
    idle_timeout_s: float
    max_consecutive_failures: int
    max_turn_s: float | None
    max_cost_usd: float | None
    secret_names: list[str]
    turn_count: int
    pending_messages: int
    consecutive_failures: int
    current_turn: int | None
    session_id: str | None
    cost_usd: float
    error: str | None
    last_turn_at: datetime | None
    created_at: datetime


class MessageIn(BaseModel):
    model_config = STRICT_INPUT
    body: Text = Field(min_length=1, max_length=100_000)
    type: Literal["text", "json", "event"] = "text"


class MessageOut(BaseModel):
    id: int
    sender: str
    type: str
    body: str
    created_at: datetime
    turn_id: int | None = Field(description="The id of the latest turn that drained it")
    processed_by_turn: int | None = Field(description="The id of the turn that processed it (a turn that succeeded)")


class TurnOut(BaseModel):
    id: int
    number: int
    state: str
    outcome: str | None
    wake_reason: str
    message_ids: list[int]
    cost_usd: float
    session_id: str | None
    resumed_session_id: str | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None


class TurnDetail(TurnOut):
    prompt: str
