"""Review-agent runs (`pr_review`) as the control plane reads them: the run with its PR and repo."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from optio.store.models import PullRequest, Repo, ReviewRun


def load(session: Session, run_id: int, workspace_id: int) -> tuple[ReviewRun, PullRequest | None, Repo] | None:
    """The run, its local PR row (None on a hosted forge, which keeps its PRs itself) and its repo."""
    run = session.scalar(select(ReviewRun).where(ReviewRun.id == run_id, ReviewRun.workspace_id == workspace_id))
    if run is None:
        return None
    pr = session.get(PullRequest, run.pr_id) if run.pr_id is not None else None
    if run.pr_id is not None and pr is None:
        return None
    repo_id = pr.repo_id if pr is not None else run.repo_id
    repo = session.get(Repo, repo_id) if repo_id is not None else None
    if repo is None or (pr is None and run.number is None):
        return None
    return run, pr, repo


def worktree_path(session: Session, run_id: int) -> str | None:
    return session.scalar(select(ReviewRun.worktree_path).where(ReviewRun.id == run_id))
