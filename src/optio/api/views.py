"""Rows to API bodies: `model_validate` where a row has the body's shape, a few derived fields where not."""

from __future__ import annotations

from typing import Any

from optio.api.schemas import AttemptOut, CiRunOut, JobOut, PullRequestDetail, RepoOut, RepoTaskOut, ReviewOut, RunOut
from optio.services.tasks import TaskView


def job_out(job: Any) -> JobOut:
    return JobOut.model_validate(job)


def run_out(run: Any, job_name: str) -> RunOut:
    """A job run with its job's name and its retry count (attempts after the first)."""
    return RunOut(
        id=run.id, job_id=run.job_id, job_name=job_name, state=run.state, params=run.params or {},
        prompt=run.prompt, attempts=run.attempts, retry_count=max(0, run.attempts - 1), error=run.error,
        control_intent=run.control_intent, version=run.version, cost_usd=run.cost_usd,
        cost_imputed=run.cost_imputed, input_tokens=run.input_tokens, output_tokens=run.output_tokens,
        created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
    )


def repo_out(repo: Any) -> RepoOut:
    return RepoOut.model_validate(repo)


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
        finished_at=t.finished_at, human_resumes=t.human_resumes,
        attempt_runs=[AttemptOut.model_validate(p) for p in view.attempts],
    )


def pr_out(pr: Any, repo: Any, cis: list[Any], reviews: list[Any]) -> PullRequestDetail:
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
        ci_runs=[CiRunOut.model_validate(c) for c in cis],
        reviews=[ReviewOut.model_validate(r) for r in reviews],
    )
