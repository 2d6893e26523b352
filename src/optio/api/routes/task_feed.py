"""`/api/tasks`: every kind of task in one newest-first stream, and one place to create any of them.

Each item carries `type` (`job_run` or `repo_task`) and has the same shape as on its per-kind route
(`/api/runs/{id}`, `/api/repo-tasks/{id}`). Review agent runs (`type=pr_review`) are listed when asked for by
type; their output is in their task's `/api/repo-tasks/{id}/timeline-logs`. Pages are keyset-paginated on
(created_at, type, id), so a page boundary is stable while new tasks arrive.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field

from optio.api.deps import Ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.schemas import (
    STRICT_INPUT,
    Line,
    PageLimit,
    RepoTaskCreate,
    RepoTaskOut,
    ReviewRunOut,
    RunCreate,
    RunOut,
)
from optio.api.views import run_out, task_out
from optio.domain.states import JobRunState, PrReviewState, RepoTaskState
from optio.errors import Invalid
from optio.services import jobs as job_service
from optio.services import task_feed as feed_service
from optio.services import tasks as task_service

router = APIRouter(prefix="/api/tasks", tags=["tasks"], responses=ERROR_RESPONSES)
TASK_TYPES = ("job_run", "repo_task", "pr_review")  # newest-first tie-break order within one timestamp
DEFAULT_TYPES = ("job_run", "repo_task")  # what the feed lists without `type`
STATES = sorted({s.value for s in JobRunState} | {s.value for s in RepoTaskState} | {s.value for s in PrReviewState})
STATE_PATTERN = "^(" + "|".join(STATES) + ")$"


class JobRunTask(RunOut):
    type: Literal["job_run"] = "job_run"


class RepoTaskItem(RepoTaskOut):
    type: Literal["repo_task"] = "repo_task"


TaskItem = Annotated[JobRunTask | RepoTaskItem, Field(discriminator="type")]
FeedItem = Annotated[JobRunTask | RepoTaskItem | ReviewRunOut, Field(discriminator="type")]


class TaskPage(BaseModel):
    items: list[FeedItem]
    next_cursor: str | None


class JobRunTaskCreate(RunCreate):
    model_config = STRICT_INPUT
    type: Literal["job_run"]
    job: Line = Field(min_length=1, max_length=200, description="Job name or id")


class RepoTaskTaskCreate(RepoTaskCreate):
    type: Literal["repo_task"]


TaskCreate = Annotated[JobRunTaskCreate | RepoTaskTaskCreate, Field(discriminator="type")]


def _encode(created_at: datetime, kind: str, row_id: int) -> str:
    raw = json.dumps([created_at.isoformat(), TASK_TYPES.index(kind), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str | None) -> tuple[datetime, int, int] | None:
    if not cursor:
        return None
    try:
        ts, rank, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        when = datetime.fromisoformat(ts)
        if (when.tzinfo is None or rank not in range(len(TASK_TYPES)) or not isinstance(row_id, int)
                or not 0 <= row_id < 2**62):
            raise ValueError
        return when, rank, row_id
    except (ValueError, TypeError, UnicodeDecodeError):
        raise Invalid("malformed cursor", field="cursor") from None


@router.get("", response_model=TaskPage)
def list_tasks(
    ctx: Ctx = Depends(get_ctx),
    type: Literal["job_run", "repo_task", "pr_review"] | None = Query(
        default=None, description="Only this kind (`pr_review`: review agent runs, listed only when asked for)"),
    state: str | None = Query(default=None, pattern=STATE_PATTERN),
    limit: Annotated[PageLimit, Query()] = 50,
    cursor: str | None = Query(default=None, max_length=200),
) -> TaskPage:
    ranks = tuple(rank for rank, kind in enumerate(TASK_TYPES) if (kind in DEFAULT_TYPES if type is None
                                                                   else kind == type))
    rows = feed_service.newest(ctx.db, ctx.workspace_id, ranks=ranks, state=state, position=_decode(cursor),
                               limit=limit + 1)
    page, more = rows[:limit], len(rows) > limit
    items: list[Any] = []
    views = task_service.task_views(ctx.db, [r.task for r in page if r.task is not None])
    for row in page:
        if row.review is not None:
            items.append(ReviewRunOut.model_validate(row.review))
        elif row.run is not None:
            items.append(JobRunTask(**run_out(row.run, row.job_name).model_dump(exclude={"type"})))
        elif row.task is not None:
            view = task_out(views[row.id])
            items.append(RepoTaskItem(**view.model_dump(exclude={"type"})))
    next_cursor = _encode(page[-1].created_at, TASK_TYPES[page[-1].rank], page[-1].id) if more and page else None
    return TaskPage(items=items, next_cursor=next_cursor)


@router.post("", response_model=TaskItem, status_code=201)
def create_task(body: Annotated[TaskCreate, Body()], ctx: Ctx = Depends(get_ctx)) -> Any:
    """Create a task of any kind: `type: job_run` runs a job, `type: repo_task` starts work on a repo."""
    if isinstance(body, JobRunTaskCreate):
        run = job_service.start_run(ctx.db, ctx.workspace_id, body.job, body.params, created_by=ctx.user_id)
        with ctx.db.read() as session:
            job = job_service.find_job(session, ctx.workspace_id, run.job_id)
        return JobRunTask(**run_out(run, job.name).model_dump(exclude={"type"}))
    task = task_service.create_task(ctx.db, ctx.workspace_id,
                                    {**body.model_dump(exclude={"type"}), "created_by": ctx.user_id})
    view = task_out(task_service.task_view(ctx.db, ctx.workspace_id, task.id))
    return RepoTaskItem(**view.model_dump(exclude={"type"}))
