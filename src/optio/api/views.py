"""Model rows to API bodies."""

from __future__ import annotations

from sqlalchemy.orm import Session

from optio.api.schemas import (
    CiRunOut,
    JobOut,
    PullRequestDetail,
    RepoOut,
    RepoTaskOut,
    ReviewOut,
    RunEventOut,
    RunOut,
)
from optio.services.tasks import TaskView
from optio.store import runs
from optio.store.models import CiRun, Job, JobRun, PrReview, PullRequest, Repo


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


def repo_out(repo: Repo) -> RepoOut:
    return RepoOut(
        id=repo.id, name=repo.name, remote_url=repo.remote_url, default_branch=repo.default_branch,
        ci_command=repo.ci_command, require_approval=repo.require_approval, auto_merge=repo.auto_merge,
        max_concurrent=repo.max_concurrent, agent_type=repo.agent_type, agent_config=repo.agent_config or {},
        review_agent_type=repo.review_agent_type, review_agent_config=repo.review_agent_config or {},
        review_prompt=repo.review_prompt, secret_names=list(repo.secret_names or []), created_at=repo.created_at,
        credential_secret=repo.credential_secret,
    )


def task_out(view: TaskView) -> RepoTaskOut:
    t, pr = view.task, view.pr
    return RepoTaskOut(
        id=t.id, repo_id=t.repo_id, repo=view.repo.name, title=t.title, prompt=t.prompt, state=t.state,
        agent_type=t.agent_type, priority=t.priority, attempts=t.attempts, resume_count=t.resume_count,
        depends_on=view.depends_on, branch=t.branch, pr_id=t.pr_id, pr_number=pr.number if pr else None,
        pr_state=pr.state if pr else None, ci_status=view.ci_status, review_status=view.review_status,
        cost_usd=t.cost_usd, cost_imputed=t.cost_imputed, input_tokens=t.input_tokens,
        output_tokens=t.output_tokens, agent_session_id=t.agent_session_id, error=t.error, note=t.note,
        control_intent=t.control_intent, version=t.version, created_at=t.created_at, started_at=t.started_at,
        finished_at=t.finished_at,
    )


def pr_out(pr: PullRequest, repo: Repo, cis: list[CiRun], reviews: list[PrReview]) -> PullRequestDetail:
    head_ci = next((c for c in cis if c.head_sha == pr.head_sha), None)
    ci_status = (head_ci.status if head_ci else "pending") if repo.ci_command else None
    review_status = None
    if reviews:
        review_status = "approved" if reviews[-1].verdict == "approve" else "changes_requested"
    return PullRequestDetail(
        id=pr.id, repo_id=pr.repo_id, repo=repo.name, number=pr.number, task_id=pr.task_id, title=pr.title,
        body=pr.body, head_branch=pr.head_branch, head_sha=pr.head_sha, base_branch=pr.base_branch,
        base_sha=pr.base_sha, state=pr.state, mergeable=pr.mergeable,
        conflicting_files=list(pr.conflicting_files or []),
        merged_sha=pr.merged_sha, ci_status=ci_status, review_status=review_status, created_at=pr.created_at,
        merged_at=pr.merged_at, closed_at=pr.closed_at,
        ci_runs=[CiRunOut(head_sha=c.head_sha, status=c.status, exit_code=c.exit_code, output=c.output,
                          duration_s=c.duration_s, created_at=c.created_at, finished_at=c.finished_at) for c in cis],
        reviews=[ReviewOut(id=r.id, head_sha=r.head_sha, verdict=r.verdict, comments=r.comments, author=r.author,
                           created_at=r.created_at) for r in reviews],
    )


def events_out(session: Session, kind: str, run_id: int, workspace_id: int) -> list[RunEventOut]:
    return [
        RunEventOut(id=e.id, event=e.event, from_state=e.from_state, to_state=e.to_state, reason=e.reason,
                    created_at=e.created_at)
        for e in runs.list_events(session, kind, run_id, workspace_id)
    ]
