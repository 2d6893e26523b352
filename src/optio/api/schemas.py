"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

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
    # Stored secrets that do not decrypt (lost key version or tampered row): "degraded" while any exist.
    unreadable_secrets: int = 0


class RepoCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    remote_url: str = Field(min_length=1, max_length=2000, description="Local path, file:// or http(s) git URL")
    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    default_branch: str | None = Field(default=None, min_length=1, max_length=200)
    ci_command: str | None = Field(default=None, max_length=10_000)
    require_approval: bool = False
    auto_merge: bool = True
    max_concurrent: int | None = Field(default=None, ge=1, le=1000)
    agent_type: str = Field(default="script", min_length=1, max_length=64)
    agent_config: dict[str, Any] = Field(default_factory=dict)
    review_agent_type: str | None = Field(default=None, min_length=1, max_length=64)
    review_agent_config: dict[str, Any] = Field(default_factory=dict)
    review_prompt: str = Field(default="", max_length=100_000)
    secret_names: list[str] = Field(default_factory=list, max_length=100)
    credential_secret: str | None = Field(
        default=None, pattern=NAME_PATTERN,
        description="Secret holding the password/token Optio's git uses for the remote (user name: in the URL)",
    )


class RepoOut(BaseModel):
    id: int
    name: str
    remote_url: str
    default_branch: str
    ci_command: str | None
    require_approval: bool
    auto_merge: bool
    max_concurrent: int | None
    agent_type: str
    agent_config: dict[str, Any]
    review_agent_type: str | None
    review_agent_config: dict[str, Any]
    review_prompt: str
    secret_names: list[str]
    credential_secret: str | None = None
    created_at: datetime


class RepoTaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repo: str = Field(min_length=1, max_length=200, description="Repo name or id")
    title: str = Field(min_length=1, max_length=500)
    prompt: str = Field(min_length=1, max_length=200_000)
    agent_type: str | None = Field(default=None, min_length=1, max_length=64)
    agent_config: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[int] = Field(default_factory=list, max_length=100)
    priority: int = Field(default=0, ge=-1000, le=1000)
    max_retries: int = Field(default=1, ge=0, le=20)
    secret_names: list[str] = Field(default_factory=list, max_length=100)


class RepoTaskOut(BaseModel):
    id: int
    type: str = "repo_task"
    repo_id: int
    repo: str
    title: str
    prompt: str
    state: str
    agent_type: str
    priority: int
    attempts: int
    resume_count: int
    depends_on: list[int]
    branch: str | None
    pr_id: int | None
    pr_number: int | None
    pr_state: str | None
    ci_status: str | None
    review_status: str | None
    cost_usd: float
    cost_imputed: bool
    input_tokens: int
    output_tokens: int
    agent_session_id: str | None
    error: str | None
    note: str | None
    control_intent: str | None
    version: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RepoTaskPage(BaseModel):
    items: list[RepoTaskOut]
    next_cursor: str | None


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field(default="", max_length=100_000)


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    force: StrictBool = Field(default=False, description="Admins only: merge past red CI or a missing approval "
                                                         "(audited)")


class CiRunOut(BaseModel):
    head_sha: str
    status: str
    exit_code: int | None
    output: str
    duration_s: float | None
    created_at: datetime
    finished_at: datetime | None


class ReviewOut(BaseModel):
    id: int
    head_sha: str
    verdict: str
    comments: str
    author: str
    created_at: datetime


class PullRequestOut(BaseModel):
    id: int
    repo_id: int
    repo: str
    number: int
    task_id: int | None
    title: str
    body: str
    head_branch: str
    head_sha: str
    base_branch: str
    base_sha: str | None
    state: str
    mergeable: bool | None
    conflicting_files: list[str]
    merged_sha: str | None
    ci_status: str | None
    review_status: str | None
    created_at: datetime
    merged_at: datetime | None
    closed_at: datetime | None


class PullRequestDetail(PullRequestOut):
    ci_runs: list[CiRunOut]
    reviews: list[ReviewOut]


class TicketCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=500)
    body: str = Field(default="", max_length=200_000)
    repo: str | None = Field(default=None, min_length=1, max_length=200, description="Repo name or id")


class TicketWork(BaseModel):
    """Hand the ticket to an agent as a repo task (fields as for a repo task; the ticket gives the prompt)."""

    model_config = ConfigDict(extra="forbid")
    repo: str | None = Field(default=None, min_length=1, max_length=200)
    agent_type: str | None = Field(default=None, min_length=1, max_length=64)
    agent_config: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=0, ge=-1000, le=1000)
    max_retries: int = Field(default=1, ge=0, le=20)
    secret_names: list[str] = Field(default_factory=list, max_length=100)


class TicketOut(BaseModel):
    number: int
    title: str
    body: str
    state: str
    repo_id: int | None
    task_id: int | None
    closed_reason: str | None
    created_at: datetime
    closed_at: datetime | None
