"""Messages to a repo task's agent: delivered mid-run where the CLI takes input, else at its next start."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from optio.api.agent_tool_schemas import TaskMessageCreate, TaskMessageOut
from optio.api.deps import Ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.schemas import Id
from optio.services import task_messages as service

router = APIRouter(prefix="/api/repo-tasks", tags=["repo tasks"], responses=ERROR_RESPONSES)


@router.post("/{task_id}/messages", response_model=TaskMessageOut, status_code=201)
def send_message(body: TaskMessageCreate, task_id: Annotated[Id, Path()],
                 ctx: Ctx = Depends(get_ctx)) -> TaskMessageOut:
    """Send the task's agent a message; ``interrupt`` stops the current attempt and resumes with it at once."""
    row = service.send(ctx.db, ctx.workspace_id, task_id, body.text, interrupt=body.interrupt, user_id=ctx.user_id,
                       username=ctx.username)
    return TaskMessageOut.model_validate(row)


@router.get("/{task_id}/messages", response_model=list[TaskMessageOut])
def list_messages(task_id: Annotated[Id, Path()], ctx: Ctx = Depends(get_ctx)) -> list[TaskMessageOut]:
    return [TaskMessageOut.model_validate(m) for m in service.listed(ctx.db, ctx.workspace_id, task_id)]
