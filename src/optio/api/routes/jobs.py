"""Jobs and starting their runs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from optio.api.deps import Ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.schemas import JobClone, JobCreate, JobOut, JobUpdate, RunCreate, RunOut
from optio.api.views import job_out, run_out
from optio.services import jobs as job_service

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=ERROR_RESPONSES)


@router.post("", response_model=JobOut, status_code=201)
def create_job(body: JobCreate, ctx: Ctx = Depends(get_ctx)) -> JobOut:
    data = body.model_dump()
    data["params_schema"] = {k: v for k, v in data["params_schema"].items()}
    job = job_service.create_job(ctx.db, ctx.workspace_id, data)
    return job_out(job)


@router.get("", response_model=list[JobOut])
def list_jobs(ctx: Ctx = Depends(get_ctx)) -> list[JobOut]:
    return [job_out(j) for j in job_service.list_jobs(ctx.db, ctx.workspace_id)]


@router.get("/{job_ref}", response_model=JobOut)
def get_job(job_ref: str, ctx: Ctx = Depends(get_ctx)) -> JobOut:
    with ctx.db.read() as session:
        return job_out(job_service.find_job(session, ctx.workspace_id, job_ref))


@router.post("/{job_ref}/runs", response_model=RunOut, status_code=201)
def start_run(job_ref: str, body: RunCreate | None = None, ctx: Ctx = Depends(get_ctx)) -> RunOut:
    run = job_service.start_run(ctx.db, ctx.workspace_id, job_ref, (body or RunCreate()).params,
                                created_by=ctx.user_id)
    with ctx.db.read() as session:
        job = job_service.find_job(session, ctx.workspace_id, run.job_id)
    return run_out(run, job.name)


@router.patch("/{job_ref}", response_model=JobOut)
def update_job(job_ref: str, body: JobUpdate, ctx: Ctx = Depends(get_ctx)) -> JobOut:
    """Change the fields given; `null` clears a limit (max_concurrent_runs, budget_usd, timeout_s)."""
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items()
               if v is not None or k in ("max_concurrent_runs", "budget_usd", "timeout_s")}
    return job_out(job_service.update_job(ctx.db, ctx.workspace_id, job_ref, changes))


@router.post("/{job_ref}/clone", response_model=JobOut, status_code=201)
def clone_job(job_ref: str, body: JobClone, ctx: Ctx = Depends(get_ctx)) -> JobOut:
    return job_out(job_service.clone_job(ctx.db, ctx.workspace_id, job_ref, body.name))


@router.delete("/{job_ref}", status_code=204)
def delete_job(job_ref: str, ctx: Ctx = Depends(get_ctx)) -> Response:
    """Refused (409) while a run is unfinished; the job's finished runs and its triggers go with it."""
    job_service.delete_job(ctx.db, ctx.workspace_id, job_ref)
    return Response(status_code=204)
