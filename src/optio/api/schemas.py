"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class ParamSpecIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    required: bool = True
    default: str | None = None
    description: str = Field(default="", max_length=2000)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN, description="Unique per workspace; letters, digits, . _ -")
    description: str = Field(default="", max_length=10_000)
    prompt_template: str = Field(min_length=1, max_length=200_000, description="May contain {{PARAM}} placeholders")
    agent_type: str = Field(default="script", min_length=1, max_length=64)
    agent_config: dict[str, Any] = Field(default_factory=dict)
    params_schema: dict[str, ParamSpecIn] = Field(default_factory=dict)
    max_retries: int = Field(default=0, ge=0, le=100)
    max_concurrent_runs: int | None = Field(default=None, ge=1, le=10_000)
    budget_usd: float | None = Field(default=None, ge=0)
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    secret_names: list[str] = Field(default_factory=list, max_length=100)


class JobOut(BaseModel):
    id: int
    name: str
    description: str
    prompt_template: str
    agent_type: str
    agent_config: dict[str, Any]
    params_schema: dict[str, Any]
    max_retries: int
    max_concurrent_runs: int | None
    budget_usd: float | None
    timeout_s: float | None
    secret_names: list[str]
    created_at: datetime


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: dict[str, str] = Field(default_factory=dict)


class RunOut(BaseModel):
    id: int
    type: str = "job_run"
    job_id: int
    job_name: str
    state: str
    params: dict[str, Any]
    prompt: str
    attempts: int
    retry_count: int
    error: str | None
    control_intent: str | None
    version: int
    cost_usd: float
    cost_imputed: bool
    input_tokens: int
    output_tokens: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: str | None


class RunEventOut(BaseModel):
    id: int
    event: str
    from_state: str | None
    to_state: str | None
    reason: str
    created_at: datetime


class LogLine(BaseModel):
    seq: int
    attempt: int
    stream: str
    text: str
    created_at: datetime


class LogPage(BaseModel):
    items: list[LogLine]
    last_seq: int
    state: str
    done: bool


class Health(BaseModel):
    status: str
    version: str
    database: str
    queue_depth: int
