"""Job runs: listing, detail, events, logs (paged and live), cancel and retry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from optio.api.deps import Ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.run_routes import add_run_routes
from optio.api.schemas import Id, PageLimit, RunOut, RunPage
from optio.api.views import run_out
from optio.domain.states import TERMINAL, RunKind
from optio.services import runs as run_service

router = APIRouter(prefix="/api/runs", tags=["runs"], responses=ERROR_RESPONSES)
KIND = RunKind.JOB_RUN.value
TERMINAL_STATES = TERMINAL[RunKind.JOB_RUN]
STATE_PATTERN = "^(" + "|".join(s for s in ("queued", "running", "completed", "failed", "cancelled")) + ")$"


def _load(ctx: Ctx, run_id: int) -> RunOut:
    return run_out(*run_service.job_run_with_name(ctx.db, ctx.workspace_id, run_id))


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


add_run_routes(router, kind=KIND, id_name="run_id", noun="run", terminal=TERMINAL_STATES,
               names=("run_events", "run_logs", "stream_logs"))


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
