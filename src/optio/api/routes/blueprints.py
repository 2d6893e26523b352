"""Blueprints: saved repo-task definitions, and running one now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from optio.api.deps import Ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.schemas import RepoTaskOut
from optio.api.trigger_schemas import BlueprintCreate, BlueprintOut, BlueprintRun
from optio.api.views import task_out
from optio.services import blueprints as blueprint_service
from optio.services import tasks as task_service

router = APIRouter(prefix="/api/blueprints", tags=["blueprints"], responses=ERROR_RESPONSES)


def blueprint_out(row: Any, repo: str) -> BlueprintOut:
    return BlueprintOut(
        id=row.id, name=row.name, description=row.description, repo=repo, repo_id=row.repo_id,
        title_template=row.title_template, prompt_template=row.prompt_template, agent_type=row.agent_type,
        agent_config=row.agent_config or {}, params_schema=row.params_schema or {}, priority=row.priority,
        max_retries=row.max_retries, secret_names=list(row.secret_names or []),
        review_settings=dict(row.review_settings or {}), created_at=row.created_at)


@router.post("", response_model=BlueprintOut, status_code=201)
def create_blueprint(body: BlueprintCreate, ctx: Ctx = Depends(get_ctx)) -> BlueprintOut:
    row = blueprint_service.create(ctx.db, ctx.workspace_id, body.model_dump())
    return blueprint_out(*blueprint_service.get(ctx.db, ctx.workspace_id, row.id))


@router.get("", response_model=list[BlueprintOut])
def list_blueprints(ctx: Ctx = Depends(get_ctx)) -> list[BlueprintOut]:
    return [blueprint_out(row, repo) for row, repo in blueprint_service.list_blueprints(ctx.db, ctx.workspace_id)]


@router.get("/{blueprint_ref}", response_model=BlueprintOut)
def get_blueprint(blueprint_ref: str, ctx: Ctx = Depends(get_ctx)) -> BlueprintOut:
    return blueprint_out(*blueprint_service.get(ctx.db, ctx.workspace_id, blueprint_ref))


@router.delete("/{blueprint_ref}", status_code=204)
def delete_blueprint(blueprint_ref: str, ctx: Ctx = Depends(get_ctx)) -> Response:
    blueprint_service.delete(ctx.db, ctx.workspace_id, blueprint_ref)
    return Response(status_code=204)


@router.post("/{blueprint_ref}/run", response_model=RepoTaskOut, status_code=201)
def run_blueprint(blueprint_ref: str, body: BlueprintRun | None = None,
                  ctx: Ctx = Depends(get_ctx)) -> RepoTaskOut:
    task = blueprint_service.run(ctx.db, ctx.workspace_id, blueprint_ref, (body or BlueprintRun()).params,
                                 created_by=ctx.user_id)
    return task_out(task_service.task_view(ctx.db, ctx.workspace_id, task.id))
