"""Rows to API bodies: `model_validate` where a row has the body's shape, a few derived fields where not."""

from __future__ import annotations

from typing import Any

from optio.api.schemas import AttemptOut, CiRunOut, JobOut, PullRequestDetail, RepoOut, RepoTaskOut, ReviewOut, RunOut
from optio.services.hosted_prs import HostedPr
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


def task_out(view: TaskView, hosted: HostedPr | None = None) -> RepoTaskOut:
    """The task; `hosted` is its PR as its hosted forge reports it (a hosted repo has no local PR row)."""
    t, pr = view.task, view.pr
    if hosted is not None:
        info = hosted.state.info
        return task_out(view).model_copy(update={
            "pr_number": info.number, "pr_state": info.state, "pr_head_sha": info.head_sha, "pr_ref": hosted.ref,
            "ci_status": hosted.ci_status, "review_status": hosted.review_status})
    return RepoTaskOut(
        id=t.id, repo_id=t.repo_id, repo=view.repo.name, title=t.title, prompt=t.prompt, state=t.state,
        agent_type=t.agent_type, priority=t.priority, attempts=t.attempts, resume_count=t.resume_count,
        depends_on=view.depends_on, branch=t.branch, pr_id=t.pr_id, pr_number=pr.number if pr else None,
        pr_state=pr.state if pr else None, pr_head_sha=pr.head_sha if pr else None,
        pr_ref=f"{view.repo.name}#{pr.number}" if pr else None, ci_status=view.ci_status,
        review_status=view.review_status,
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


def hosted_pr_out(hosted: HostedPr) -> PullRequestDetail:
    """A hosted forge's PR in the local PR's shape: no local id or times, its current head's CI and latest review."""
    info, ci, review = hosted.state.info, hosted.state.ci, hosted.state.review
    return PullRequestDetail(
        id=None, repo_id=hosted.repo.id, repo=hosted.repo.name, number=info.number, task_id=hosted.task_id,
        title=info.title, body="", head_branch=info.head_branch, head_sha=info.head_sha,
        base_branch=info.base_branch, base_sha=info.base_sha, state=info.state, mergeable=info.mergeable,
        conflicting_files=list(info.conflicting_files), merged_sha=info.merged_sha, ci_status=hosted.ci_status,
        review_status=hosted.review_status, created_at=None, merged_at=None, closed_at=None, forge=hosted.repo.forge,
        ci_runs=[CiRunOut(head_sha=ci.head_sha, status=ci.status, exit_code=None, output=ci.output,
                          duration_s=ci.duration_s, created_at=None, finished_at=None,
                          failure_kind=ci.failure_kind)] if ci is not None else [],
        reviews=[ReviewOut(id=review.id, head_sha=review.head_sha, verdict=review.verdict, comments=review.comments,
                           author=review.author, created_at=None)] if review is not None else [],
    )
