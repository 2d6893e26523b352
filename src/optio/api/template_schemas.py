"""Request and response bodies of `/api/templates`, the prompt template library."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from optio.api.schemas import STRICT_INPUT, Line, ParamValue, Text

RepoRef = Annotated[Line, Field(min_length=1, max_length=200, description="Repo name or id")]


class TemplateOut(BaseModel):
    kind: str = Field(description="task, review or job")
    repo: str | None = Field(description="The repo it overrides for; null: the workspace's (or built-in)")
    source: str = Field(description="repo, workspace or builtin: where the text comes from")
    body: str
    version: int | None = Field(description="For compare-and-swap on the next set; null for the built-in text")
    updated_at: datetime | None


class TemplateEffectiveOut(TemplateOut):
    variables: dict[str, str] = Field(description="What the kind's templates may read, and what each is")


class TemplateSet(BaseModel):
    model_config = STRICT_INPUT
    body: Text = Field(min_length=1, max_length=200_000, description="The template; {{variable}}, {{#if}} allowed")
    repo: RepoRef | None = Field(default=None, description="Override for this repo; omitted: the workspace default")
    version: int | None = Field(default=None, ge=0, description="The version last read (0: none yet); "
                                                                "a different stored one is a 409")


class TemplatePreview(BaseModel):
    model_config = STRICT_INPUT
    repo: RepoRef | None = None
    body: Text | None = Field(default=None, max_length=200_000, description="Preview this text instead (unsaved)")
    values: dict[Annotated[Line, Field(max_length=200)], ParamValue] = Field(
        default_factory=dict, description="Variable values (`params.NAME` for a job's params); the rest are samples")


class TemplatePreviewOut(BaseModel):
    kind: str
    source: str
    rendered: str
