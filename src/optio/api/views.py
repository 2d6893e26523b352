"""Model rows to API bodies."""

from __future__ import annotations

from optio.api.schemas import JobOut, RunOut
from optio.store.models import Job, JobRun


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id, name=job.name, description=job.description, prompt_template=job.prompt_template,
        agent_type=job.agent_type, agent_config=job.agent_config or {}, params_schema=job.params_schema or {},
        max_retries=job.max_retries, max_concurrent_runs=job.max_concurrent_runs, budget_usd=job.budget_usd,
        timeout_s=job.timeout_s, secret_names=list(job.secret_names or []), created_at=job.created_at,
    )


def run_out(run: JobRun, job_name: str) -> RunOut:
    return RunOut(
        id=run.id, job_id=run.job_id, job_name=job_name, state=run.state, params=run.params or {},
        prompt=run.prompt, attempts=run.attempts, retry_count=max(0, run.attempts - 1), error=run.error,
        control_intent=run.control_intent, version=run.version, cost_usd=run.cost_usd,
        cost_imputed=run.cost_imputed, input_tokens=run.input_tokens, output_tokens=run.output_tokens,
        created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
    )
