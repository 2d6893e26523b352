"""Job runs: listing, detail, events, logs (paged and live), cancel and retry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from optio.api.deps import Ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.logstream import STREAM_RESPONSES, log_page, sse
from optio.api.schemas import Id, LogLimit, LogPage, PageLimit, RunEventOut, RunOut, RunPage, Seq
from optio.api.views import events_out, run_out
from optio.domain.states import TERMINAL, RunKind
from optio.services import runs as run_service
from optio.store.models import Job

router = APIRouter(prefix="/api/runs", tags=["runs"], responses=ERROR_RESPONSES)
KIND = RunKind.JOB_RUN.value
TERMINAL_STATES = TERMINAL[RunKind.JOB_RUN]
STATE_PATTERN = "^(" + "|".join(s for s in ("queued", "running", "completed", "failed", "cancelled")) + ")$"


def _load(ctx: Ctx, run_id: int) -> RunOut:
    with ctx.db.read() as session:
        run = run_service.get_job_run(session, ctx.workspace_id, run_id)
        job = session.get(Job, run.job_id)
        return run_out(run, job.name if job else "")


@router.get("", response_model=RunPage)
def list_runs(
    ctx: Ctx = Depends(get_ctx),
    job: str | None = Query(default=None, max_length=200, description="Job id or name"),
    state: str | None = Query(default=None, pattern=STATE_PATTERN),
    limit: Annotated[PageLimit, Query()] = 50,
    cursor: str | None = Query(default=None, max_length=100),
) -> RunPage:
    rows, next_cursor = run_service.list_job_runs(ctx.db, ctx.workspace_id, job=job, state=state, limit=limit,
                                                  cursor=cursor)
    return RunPage(items=[run_out(r, name) for r, name in rows], next_cursor=next_cursor)


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: Id, ctx: Ctx = Depends(get_ctx)) -> RunOut:
    return _load(ctx, run_id)


@router.get("/{run_id}/events", response_model=list[RunEventOut])
def run_events(run_id: Id, ctx: Ctx = Depends(get_ctx)) -> list[RunEventOut]:
    _load(ctx, run_id)
    with ctx.db.read() as session:
        return events_out(session, KIND, run_id, ctx.workspace_id)


def _state_of(session: Any, workspace_id: int, run_id: int) -> str:
    return run_service.get_job_run(session, workspace_id, run_id).state


def _page(ctx: Ctx, run_id: int, after: int, limit: int) -> LogPage:
    return log_page(ctx.db, KIND, run_id, ctx.workspace_id, state_of=_state_of, terminal=TERMINAL_STATES,
                    after=after, limit=limit)


@router.get("/{run_id}/logs", response_model=LogPage)
def run_logs(
    run_id: Id,
    ctx: Ctx = Depends(get_ctx),
    after: Annotated[Seq, Query(description="Return lines with seq > after")] = 0,
    limit: Annotated[LogLimit, Query()] = 1000,
) -> LogPage:
    return _page(ctx, run_id, after, limit)


@router.get("/{run_id}/logs/stream", response_class=StreamingResponse, responses=STREAM_RESPONSES)
def stream_logs(run_id: Id, ctx: Ctx = Depends(get_ctx),
                after: Annotated[Seq, Query(description="Replay lines with seq > after")] = 0) -> StreamingResponse:
    """Replays lines after `after`, then follows until the run ends (SSE: `line` events, then `end`)."""
    _load(ctx, run_id)
    return sse(lambda cursor: _page(ctx, run_id, cursor, 1000), after)


@router.post("/{run_id}/cancel", response_model=RunOut, status_code=202)
def cancel_run(run_id: Id, ctx: Ctx = Depends(get_ctx)) -> RunOut:
    run_service.get_job_run_or_404(ctx.db, ctx.workspace_id, run_id)
    run_service.set_intent(ctx.db, ctx.workspace_id, KIND, run_id, "cancel",
                           {"cancel": ("queued", "running")})
    return _load(ctx, run_id)


@router.post("/{run_id}/retry", response_model=RunOut, status_code=202)
def retry_run(run_id: Id, ctx: Ctx = Depends(get_ctx)) -> RunOut:
    run_service.get_job_run_or_404(ctx.db, ctx.workspace_id, run_id)
    run_service.set_intent(ctx.db, ctx.workspace_id, KIND, run_id, "retry", {"retry": ("failed", "cancelled")})
    return _load(ctx, run_id)
