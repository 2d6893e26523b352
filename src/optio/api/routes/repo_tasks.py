"""Repo tasks: create, read, logs, and steer (cancel, retry, resume)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from optio.api.deps import Ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.run_routes import add_run_routes
from optio.api.schemas import (
    Id,
    PageLimit,
    RepoTaskCreate,
    RepoTaskOut,
    RepoTaskPage,
    TaskTimelineLogs,
    TimelineLine,
    TimelineSection,
)
from optio.api.views import task_out
from optio.domain.states import TERMINAL, RepoTaskState, RunKind
from optio.services import hosted_prs
from optio.services import runs as run_service
from optio.services import tasks as task_service

router = APIRouter(prefix="/api/repo-tasks", tags=["repo tasks"], responses=ERROR_RESPONSES)
KIND = RunKind.REPO_TASK.value
TERMINAL_STATES = TERMINAL[RunKind.REPO_TASK]
STATE_PATTERN = "^(" + "|".join(s.value for s in RepoTaskState) + ")$"
INTENT_STATES = {
    "cancel": tuple(s.value for s in RepoTaskState if s.value not in TERMINAL_STATES),
    "retry": ("failed", "cancelled", "needs_attention"),
    "resume": ("needs_attention", "pr_opened"),
}


def _out(ctx: Ctx, task_id: int) -> RepoTaskOut:
    view = task_service.task_view(ctx.db, ctx.workspace_id, task_id)
    return task_out(view, hosted_prs.of_task(ctx.optio.ctx.forges, view.repo, task_id,
                                             has_branch=view.task.branch is not None))


@router.post("", response_model=RepoTaskOut, status_code=201)
def create_task(body: RepoTaskCreate, ctx: Ctx = Depends(get_ctx)) -> RepoTaskOut:
    task = task_service.create_task(ctx.db, ctx.workspace_id, {**body.model_dump(), "created_by": ctx.user_id})
    return _out(ctx, task.id)


@router.get("", response_model=RepoTaskPage)
def list_tasks(
    ctx: Ctx = Depends(get_ctx),
    repo: str | None = Query(default=None, max_length=200),
    state: str | None = Query(default=None, pattern=STATE_PATTERN),
    limit: Annotated[PageLimit, Query()] = 50,
    cursor: str | None = Query(default=None, max_length=100),
) -> RepoTaskPage:
    views, next_cursor = task_service.list_tasks(ctx.db, ctx.workspace_id, repo=repo, state=state, limit=limit,
                                                 cursor=cursor)
    return RepoTaskPage(items=[task_out(v) for v in views], next_cursor=next_cursor)


@router.get("/{task_id}", response_model=RepoTaskOut)
def get_task(task_id: Id, ctx: Ctx = Depends(get_ctx)) -> RepoTaskOut:
    return _out(ctx, task_id)


@router.get("/{task_id}/timeline-logs", response_model=TaskTimelineLogs)
def task_timeline_logs(task_id: Id, ctx: Ctx = Depends(get_ctx)) -> TaskTimelineLogs:
    """The output of every run of the task in the order they started: the agent's attempts, the CI runs on its
    pull request and its review agent runs, each section labelled with its source (`/logs` keeps the agent's)."""
    state, sections = task_service.task_timeline(ctx.db, ctx.workspace_id, task_id)
    return TaskTimelineLogs(
        task_id=task_id, state=state, done=state in TERMINAL_STATES,
        sections=[TimelineSection(kind=s.kind, ref=s.ref, source=s.source,  # type: ignore[arg-type]
                                  status=s.status, started_at=s.started_at, finished_at=s.finished_at,
                                  head_sha=s.head_sha, exit_code=s.exit_code,
                                  lines=[TimelineLine(stream=st, text=tx) for st, tx in s.lines])
                  for s in sections],
    )


add_run_routes(router, kind=KIND, id_name="task_id", noun="task", terminal=TERMINAL_STATES,
               names=("task_events", "task_logs", "stream_task_logs"))


def _intent(ctx: Ctx, task_id: int, intent: str) -> RepoTaskOut:
    _out(ctx, task_id)
    run_service.set_intent(ctx.db, ctx.workspace_id, KIND, task_id, intent, INTENT_STATES)
    return _out(ctx, task_id)


@router.post("/{task_id}/cancel", response_model=RepoTaskOut, status_code=202)
def cancel_task(task_id: Id, ctx: Ctx = Depends(get_ctx)) -> RepoTaskOut:
    return _intent(ctx, task_id, "cancel")


@router.post("/{task_id}/retry", response_model=RepoTaskOut, status_code=202)
def retry_task(task_id: Id, ctx: Ctx = Depends(get_ctx)) -> RepoTaskOut:
    return _intent(ctx, task_id, "retry")


@router.post("/{task_id}/resume", response_model=RepoTaskOut, status_code=202)
def resume_task(task_id: Id, ctx: Ctx = Depends(get_ctx)) -> RepoTaskOut:
    return _intent(ctx, task_id, "resume")
