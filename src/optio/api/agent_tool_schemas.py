"""Request and response bodies for MCP servers, skills, messages to a task's agent and vendor models."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from optio.api.schemas import Line, Text

REPO_DESCRIPTION = "Repo name or id: scope the definition to that repo (default: the whole workspace)"


class McpServerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=48, description="Tools appear to Claude Code as mcp__<name>__<tool>")
    command: Line | None = Field(default=None, max_length=4096, description="stdio server: the program to run")
    args: list[str] = Field(default_factory=list, max_length=64)
    url: Line | None = Field(default=None, max_length=2048, description="HTTP server: its URL")
    env: dict[str, str] = Field(default_factory=dict, max_length=64,
                                description="NAME -> 'secret:SECRET_NAME'; resolved from secrets at run time")
    repo: str | None = Field(default=None, min_length=1, max_length=200, description=REPO_DESCRIPTION)


class McpServerOut(BaseModel):
    name: str
    scope: Literal["workspace", "repo"]
    repo_id: int | None
    transport: Literal["stdio", "http"]
    command: str | None
    args: list[str]
    url: str | None
    env: dict[str, str] = Field(description="NAME -> 'secret:SECRET_NAME'")
    created_at: datetime


class SkillCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=48)
    text: Text | None = Field(default=None, max_length=65_536, description="The instructions themselves")
    repo_path: Line | None = Field(default=None, max_length=1200,
                                  description="REPO:PATH, read from the run's checkout of REPO when it starts")
    description: Line = Field(default="", max_length=1024, description="One line: when the skill applies")
    repo: str | None = Field(default=None, min_length=1, max_length=200, description=REPO_DESCRIPTION)


class SkillOut(BaseModel):
    name: str
    scope: Literal["workspace", "repo"]
    repo_id: int | None
    description: str
    source: Literal["text", "repo"]
    text: str | None
    repo_path: str | None
    created_at: datetime


class TaskMessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Text = Field(min_length=1, max_length=32_000)
    interrupt: bool = Field(default=False,
                            description="Stop the current attempt and resume at once with this message")


class TaskMessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    task_id: int
    text: str
    interrupt: bool
    status: Literal["queued", "sent", "delivered"]
    delivered_via: str | None
    delivered_attempt: int | None
    created_at: datetime
    delivered_at: datetime | None


class ModelPriceOut(BaseModel):
    model: str
    input_per_mtok: float
    output_per_mtok: float
    cache_read_per_mtok: float
    cache_write_per_mtok: float


class VendorModelsOut(BaseModel):
    vendor: str
    models: list[ModelPriceOut]
    reasoning_efforts: list[str]
