"""Request and response bodies of `/api/triggers` and `/api/hooks`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from optio.api.schemas import STRICT_INPUT, Line, ParamValue

ParamName = Annotated[Line, Field(max_length=200)]


class TriggerCreate(BaseModel):
    model_config = STRICT_INPUT
    type: Literal["manual", "schedule", "webhook"]
    target_type: Literal["job"] = "job"
    target: Annotated[Line, Field(min_length=1, max_length=200, description="The job's name or id")]
    cron: Annotated[Line, Field(max_length=200)] | None = Field(default=None, description="Schedule: 5-field cron")
    timezone: Annotated[Line, Field(max_length=64)] | None = Field(default=None,
                                                                   description="Schedule: IANA zone; default UTC")
    params: dict[ParamName, ParamValue] = Field(default_factory=dict, description="Parameters of every fire")
    param_map: dict[ParamName, Annotated[Line, Field(max_length=500)]] = Field(
        default_factory=dict, description="Webhook: parameter → `$.path` in the body")


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
